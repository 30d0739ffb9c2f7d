"""The describing box: where a submission's own recipe file is imported to check its configuration.

A recipe file is submitted code, and importing it runs it; the driver (``bench run``, ``validate``, a study's plan)
must still refuse a misspelt hyperparameter before any trial starts. So the driver asks this box: started as
``python -I -c BOOTSTRAP FD BENCH_DIR describe`` and walled in like the recipe's box (it may read only code and the
submission's folders, write only its scratch folder), it imports the recipe, validates each configuration asked
for against the recipe's typed ``Config`` (:func:`bench.train.configure.configure`), and sends back the resolved
configurations as JSON, or the problems.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.box import sandbox


def main(fd: int) -> int:
    channel, _, _ = sandbox.open_box(fd)
    from bench.errors import BenchError, SpecError
    from bench.spec.loading import Submission
    from bench.train.configure import check_search_space, configure
    from bench.train.loader import load_recipe_class

    request, _ = channel.receive()
    submission = Submission.from_message(request["submission"])
    try:
        recipe_class = load_recipe_class(submission)
        configs: list[Any] = []
        for check in request["checks"]:
            config = configure(recipe_class, submission, check["overrides"], check["workload"], check["where"])
            configs.append(config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config))
        if request.get("search_space"):
            check_search_space(recipe_class, submission)
    except SpecError as exc:
        channel.send({"kind": "problems", "path": exc.path, "problems": list(exc.problems)})
        return 0
    except BenchError as exc:
        channel.send({"kind": "error", "message": str(exc)})
        return 0
    channel.send({"kind": "described", "class": recipe_class.__name__,
                  "typed": recipe_class.Config is not None, "configs": configs})
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))

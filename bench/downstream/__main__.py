"""``python -m bench.downstream TASK ...``: download lm-eval tasks' datasets once, for offline evaluation later."""

from __future__ import annotations

import sys

from bench.downstream.runner import prefetch


def main(names: list[str]) -> int:
    if not names:
        print("usage: python -m bench.downstream TASK [TASK ...]   (lm-eval task, group or tag names)")
        return 2
    failures = prefetch(names)
    for failure in failures:
        print(f"{failure.task}: {failure.reason}", file=sys.stderr)
    print(f"{len(names) - len(failures)} of {len(names)} tasks ready for offline evaluation")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

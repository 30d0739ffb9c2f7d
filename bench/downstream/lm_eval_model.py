"""``lm_eval --model bench --model_args result=PATH``: a saved run as an lm-eval model.

:class:`BenchResultLM` is :class:`~bench.downstream.adapter.BenchLM` built from a result file, the way lm-eval builds
its own models from ``--model_args``: the run's saved model (``bench run --save-model``), loaded safely and checked
against the hash its result recorded, with the workload's tokenizer and evaluation window. Importing this module
registers it under the name ``bench``; the top-level module ``pretrain_bench_lm_eval`` arranges that import for lm-eval's own
command line.

``--model_args``: ``result`` (required), ``workload`` (a name or path, when the run's own workload file changed or the
run used a derived budget; as ``bench eval --workload``). lm-eval's ``--device`` and ``--batch_size`` apply
(``auto`` means the adapter's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lm_eval.api.registry import register_model

from bench.downstream.adapter import BenchLM
from bench.errors import BenchError

NAME = "bench"


@register_model(NAME)
class BenchResultLM(BenchLM):
    """The model saved with the run in ``result``, as lm-eval's ``bench`` model."""

    def __init__(
        self,
        result: str,
        workload: str | None = None,
        device: str | None = None,
        batch_size: int | str | None = None,
        max_batch_size: int | None = None,  # noqa: ARG002 - lm-eval passes it to every model
        **unknown: Any,
    ) -> None:
        from bench.data.prepare import prepare
        from bench.downstream.saved import saved_run, workload_for
        from bench.train.saved_model import load_model
        from bench.train.runtime import pick_device

        if unknown:
            raise BenchError(
                f"lm-eval model '{NAME}': unknown --model_args {sorted(unknown)}; it takes result=PATH[,workload=NAME]"
            )
        run = saved_run(Path(result))
        path, spec, _ = workload_for(run, workload)
        assert run.result.saved_model is not None
        chosen = pick_device(device)
        model = load_model(run.model_path, chosen, run.result.saved_model.sha256)
        data = prepare(spec, path.parent)
        batch = int(batch_size) if isinstance(batch_size, int) or str(batch_size).isdigit() else None
        super().__init__(model, data.tokenizer().tokenizer, data.eos_id, spec.eval.seq_len, chosen, batch)
        self.run_id = run.result.run_id

    def get_model_info(self) -> dict[str, Any]:
        """Recorded by lm-eval in its results' ``config``."""
        return {"bench_run_id": self.run_id}

"""Models leaving the suite: ``bench export RESULT --format hf`` writes a saved run's model (``--save-model``) in a
format other tools load. Only Hugging Face ``transformers`` folders so far (:mod:`.hf`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError

FORMATS = ("hf",)
CHECK_TOLERANCE = 1e-4
"""Largest absolute logit difference accepted between the exported model, loaded back, and the saved one."""


def export_result(result_path: Path, out: Path, fmt: str = "hf", workload: str | None = None) -> dict[str, Any]:
    """Export the model saved with the run in ``result_path`` to the folder ``out``; returns the provenance written.

    The tokenizer comes from the run's workload (checked by hash as for ``bench eval``; ``workload`` names another
    one explicitly). The folder is loaded back with ``transformers`` and its logits compared with the saved model's,
    so a folder that does not compute what the run trained is never left behind silently.
    """
    from bench.data.prepare import prepare
    from bench.downstream.saved import saved_run, workload_for
    from bench.export.hf import export_hf, loaded_logits_gap
    from bench.train.saved_model import load_model

    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt!r} is not supported; choose one of: {', '.join(FORMATS)}")
    run = saved_run(result_path)
    path, spec, _ = workload_for(run, workload)
    assert run.result.saved_model is not None
    model = load_model(run.model_path, "cpu", run.result.saved_model.sha256)
    data = prepare(spec, path.parent)
    provenance = {
        "run_id": run.result.run_id, "workload": run.result.workload, "workload_hash": run.result.workload_hash,
        "submission": run.result.submission, "submission_hash": run.result.submission_hash,
        "checkpoint_sha256": run.result.saved_model.sha256, "model_config": model.config.__dict__,
    }
    loaded = data.tokenizer()
    export_hf(model, loaded.tokenizer, data.eos_id, spec.eval.seq_len, out, provenance)
    gap = loaded_logits_gap(model, out)
    if not gap <= CHECK_TOLERANCE:
        raise BenchError(f"{out}: the exported model's logits differ from the saved model's by {gap:.3g} (> "
                         f"{CHECK_TOLERANCE}); do not use this folder")
    return provenance | {"max_logit_difference": gap, "torch": torch.__version__}

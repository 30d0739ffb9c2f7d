"""The closing table of ``bench run`` and ``bench tune``: one row per trial with what a reader checks first."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from bench.spec.result import RunResult, TrialStatus
from bench.spec.units import format_count, format_duration

_MEASURED = {"nvml-counter": "(m)", "rapl": "(m)"}  # everything else is an estimate
_STATUS_STYLE = {TrialStatus.ok: "green", TrialStatus.invalid: "yellow", TrialStatus.overrun: "yellow"}


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(results: Sequence[RunResult], title: str = "Results") -> Table:
    """gap = validation bits per byte above the corpus's entropy floor; energy (m) measured, (e) estimated."""
    table = Table(title=title, title_justify="left", caption="gap: bpb above the entropy floor; energy (m) measured, (e) estimated",
                  caption_justify="left")
    table.add_column("submission", no_wrap=True)
    for column in ("seed", "status", "loss", "bpb", "gap", "to target", "tokens", "tok/s", "MFU", "energy"):
        table.add_column(column, justify="left" if column == "status" else "right", no_wrap=True)
    for result in results:
        final = result.final
        floor = result.validation.entropy_floor_bpb if result.validation else None
        gap = final.val_bpb - floor if final is not None and floor is not None else None
        energy = result.energy.kwh if result.energy else None
        method = result.energy.train.method if result.energy else ""
        style = _STATUS_STYLE.get(result.status, "red")
        table.add_row(
            result.submission,
            str(result.seed),
            f"[{style}]{result.status.value}[/]" + (f"\n{result.reason}" if result.reason else ""),
            _number(final.val_loss if final else None),
            _number(final.val_bpb if final else None),
            _number(gap),
            format_duration(result.time_to_target_s) if result.time_to_target_s is not None else "-",
            format_count(result.tokens),
            format_count(result.tokens_per_s) if result.tokens_per_s else "-",
            f"{result.compute.mfu:.1%}" if result.compute and result.compute.mfu is not None else "-",
            f"{energy * 1000:.2g} Wh {_MEASURED.get(method, '(e)')}" if energy is not None else "-",
        )
    return table

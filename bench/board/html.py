"""The leaderboard as static HTML: ``index.html`` and one page per entry, inline CSS, no scripts, relative links.

Every page opens from file:// with no network. Everything taken from result files (names, failure reasons) is
escaped by Jinja's autoescaping, since a failure reason may contain anything a traceback does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jinja2

from bench.board import format as fmt
from bench.board.columns import (
    ENERGY_NOT_SHOWN,
    METRIC_COLUMNS,
    TEXT_COLUMNS,
    WRAPPED_COLUMNS,
    Board,
    Column,
    board_of,
    delta_verdict,
    detail_columns,
    downstream_caption,
    downstream_columns,
    energy_measured,
    headline_columns,
    more_columns,
    normalised_downstream,
    resolution_note,
    run_kwh,
    run_peak_memory,
    split_constant,
    superseded_columns,
    unranked_columns,
)
from bench.board.delta import crossing, difference_text, speedup_text, time_to_target_text, versus
from bench.board.describe import INTRO, METHODS, budget_line, group_heading, noise_floor, provisional_line
from bench.board.plots import Plot
from bench.board.rank import MIN_SEEDS, Entry, Group, Section, sweep_trial
from bench.board.stats import Estimate
from bench.board.trust import Standing
from bench.results.registry import REGISTRY_PATH
from bench.results.schema import RunResult
from bench.spec.hparams import flatten, format_value


def _template(name: str) -> str:
    return files("bench.board").joinpath(name).read_text(encoding="utf-8")


_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(_template),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class _Cell:
    text: str
    cls: str = ""
    tip: str = ""
    href: str | None = None
    sub: str = ""  # a second, muted line: what tells this entry apart from another of its submission


@dataclass(frozen=True)
class _Table:
    headers: list[_Cell]
    rows: list[list[_Cell]]
    constant: list[tuple[str, str]]  # columns moved to the caption: (header, the value every row has)


def entry_page(section: Section, entry: Entry) -> str:
    """Where an entry's page lives, relative to the leaderboard folder."""
    return f"entries/{section.slug}/{entry.slug}.html"


def _classes(name: str, key: str) -> str:
    classes = [] if name in TEXT_COLUMNS else ["num"]
    classes += ["wrap"] if name in WRAPPED_COLUMNS else []
    classes += ["key"] if name == key else []
    classes += ["rank"] if name == "rank" else []
    classes += ["reason"] if name == "why not ranked" else []
    return " ".join(classes)


def _table(section: Section, entries: Sequence[Entry], columns: Sequence[Column], key: str) -> _Table | None:
    if not entries or not columns:
        return None
    kept, constant = split_constant(columns, entries)
    headers = [_Cell(name, _classes(name, key), tip) for name, tip, _ in kept]
    rows = []
    for e in entries:
        row = []
        for name, _, cell in kept:
            if name == "submission":
                row.append(_Cell(e.submission, _classes(name, key), href=entry_page(section, e), sub=e.variant))
            elif name.startswith("Δ vs "):
                row.append(_Cell(cell(e), f"{_classes(name, key)} {delta_verdict(e)}".strip()))
            else:
                row.append(_Cell(cell(e), _classes(name, key)))
        rows.append(row)
    return _Table(headers, rows, constant)


def _group_view(section: Section, group: Group, board: Board) -> dict:
    key = METRIC_COLUMNS[section.metric]
    compared = group.compared
    heading = group_heading(section, group)
    return {
        "official": group.official,
        "heading": heading[0] if heading else "",
        "about": heading[1] if heading else "",
        "ranked": _table(section, group.ranked, headline_columns(board, ranked=True), key),
        "provisional": _table(section, group.provisional, headline_columns(board, ranked=False), key),
        "more": _table(section, compared, more_columns(board), key),
        "downstream": _table(section, compared, downstream_columns(compared), key),
        "downstream_caption": downstream_caption(compared),
        "superseded": _table(section, group.superseded, superseded_columns(board), key),
        "unranked": _table(section, group.unranked, unranked_columns(board), key),
    }


def render_html(
    sections: Sequence[Section], plots: dict[str, list[Plot]], as_of: str, reading: Sequence[tuple[str, str, str]] = ()
) -> str:
    """The whole ``index.html``: each section's tables and plots; every entry links to its own page, and the header
    to the written analyses (``reading``: title, relative link, what it answers)."""
    views = []
    for s in sections:
        board = board_of(s)
        views.append(
            {
                "slug": s.slug,
                "title": f"{s.workload} · {s.hardware_class}",
                "hardware_class": s.hardware_class,
                "description": s.spec.description.strip() if s.spec else "",
                "budget": budget_line(s),
                "noise_floor": noise_floor(s),
                "reference": board.reference,
                "provisional_line": provisional_line(),
                "energy_note": "" if board.energy else ENERGY_NOT_SHOWN,
                "groups": [_group_view(s, g, board) for g in s.groups],
                "notes": s.notes,
                "plots": plots[s.slug],
            }
        )
    return _ENV.get_template("page.html.j2").render(
        intro=INTRO,
        methods=METHODS,
        min_seeds=MIN_SEEDS,
        sections=views,
        runs=sum(len(e.runs) for s in sections for e in s.entries),
        as_of=as_of,
        reading=reading,
    )


def _relative(target: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(target, page_dir)).as_posix()


def _ttt(run: RunResult) -> str:
    """Between which evaluations a run reached the target (its interpolated value is in its result file)."""
    between = crossing(run)
    return fmt.duration_range(*between) if between else "not reached"


def _seed_rows(entry: Entry, files: dict[RunKey, Path], page_dir: Path, board: Board) -> list[dict]:
    """One row per run of the entry: its numbers and links to its result file and log, where they exist."""
    rows = []
    for run in sorted(entry.runs, key=lambda r: (r.seed, r.started_at)):
        result = files.get(run_key(run))
        log = result.with_name(f"{run.run_id}.log") if result else None
        kwh = run_kwh(run)
        energy = fmt.MISSING if kwh is None else f"{fmt.energy(kwh)} ({'m' if energy_measured(run) else 'e'})"
        wall = run.timing.train_wall_s
        rows.append(
            {
                "seed": run.seed,
                "run_id": run.run_id,
                "status": run.status.value + ("" if run.scored or run.reason is None else f": {run.reason}"),
                "val_loss": f"{run.final.val_loss:.3f}" if run.final else fmt.MISSING,
                "val_bpb": f"{run.final.val_bpb:.3f}" if run.final else fmt.MISSING,
                "ttt": _ttt(run),
                "steps": str(run.steps),
                "tokens": fmt.si(run.tokens),
                "tokens_per_s": fmt.si(run.tokens_per_s),
                "memory": fmt.size(run_peak_memory(run)),
                "wall": fmt.MISSING if wall is None else f"{wall:.0f} s",
                "energy": energy if board.energy else None,  # an estimate is never shown (ENERGY_NOT_SHOWN)
                "downstream": fmt.signed(normalised_downstream(run)),
                "result": _relative(result, page_dir) if result else None,
                "log": _relative(log, page_dir) if log is not None and log.exists() else None,
            }
        )
    return rows


def _hardware(entry: Entry) -> list[str]:
    seen = []
    for run in entry.runs:
        hw = run.hardware
        if hw is None:
            continue
        gpus = ", ".join(sorted(set(hw.gpus))) if hw.gpus else "no GPU"
        line = (
            f"{hw.hardware_class} ({'matches' if hw.matches_class else 'does not match'} the class): {hw.cpu_model}, "
            f"{hw.cpu_cores} cores, {hw.memory_bytes / 2**30:.0f} GiB; {gpus}; device {run.device}, "
            f"world size {run.world_size}; host {hw.hostname_hash}"
            + (f"; speed {hw.speed_index:.2f}x the class's reference host" if hw.speed_index is not None else "")
            + (f" ({hw.mismatch})" if hw.mismatch else "")
        )
        if line not in seen:
            seen.append(line)
    return seen or ["not recorded (no run reached the hardware fingerprint)"]


def _hyperparameters(entry: Entry) -> list[tuple[str, str, bool]]:
    """``(dotted name, value, changed from the manifest)`` of every resolved hyperparameter, values printed with
    :func:`bench.spec.hparams.format_value` (0.9999 stays 0.9999); empty for sweep trials (one set per trial)."""
    if any(sweep_trial(r) for r in entry.runs):
        return []
    changed = {name for name, _ in entry.changes}
    named: dict[str, object] = {}
    for name, value in flatten(entry.runs[0].hyperparameters).items():  # a list's items by index, as --set names
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        named |= {name if i is None else f"{name}.{i}": item for i, item in items}
    return [(name, format_value(value), name in changed or name.rsplit(".", 1)[0] in changed)
            for name, value in sorted(named.items())]


def _tuning(entry: Entry) -> str:
    """The declared tuning budget charged to the configuration, from its runs' ``tuning`` record."""
    records = [r.tuning for r in entry.runs if r.tuning is not None]
    if not records:
        return "none declared: the manifest's hyperparameters, not tuned on this workload by bench tune"
    record = records[0]
    budget = record.get("declared_budget")
    parts = [f"sweep {record.get('sweep_id', '?')}"]
    if isinstance(budget, dict):
        parts.append(f"{budget.get('trials', '?')} trials")
        total = budget.get("total") or {}
        if "wall_clock_s" in total:
            parts.append(f"{fmt.duration_estimate(Estimate(float(total['wall_clock_s']), None, 1))} in total")
        if "tokens" in total:
            parts.append(f"{fmt.si(float(total['tokens']))} tokens in total")
    if "chosen_trial" in record:
        parts.append(f"declared best: trial {record['chosen_trial']}")
    if record.get("tuning_seeds"):
        parts.append(f"tuned on seed(s) {', '.join(map(str, record['tuning_seeds']))}")
    return ", ".join(parts)


def _state(entry: Entry) -> str:
    """Where an entry stands on the board, in a few words."""
    if entry.rank is not None:
        return f"ranked {entry.rank_label}"
    if entry.provisional:
        return f"provisional: {len(entry.scored)} scored seed(s), ranking needs {MIN_SEEDS}"
    if entry.superseded_by is not None:
        return "superseded by the submission's current configuration"
    return "not ranked"


def _verification(entry: Entry) -> list[str]:
    """Who stands behind the entry's runs and what source they ran, one line each, for its page."""
    lines = [f"Verified by {v.label} on {v.when.isoformat()}: {v.how}" for v in entry.vouchers]
    if entry.standing is Standing.submitted:
        lines.append("Submitted: nobody but its submitter has reproduced these results yet (bench verify RESULT...).")
    if entry.version is not None:
        v = entry.version
        lines.append(f"Source: an earlier version than submissions/{entry.submission} holds now, recorded in "
                     f"{REGISTRY_PATH} on {v.recorded.isoformat()} by {v.by}: {v.why}.")
    elif entry.standing is not Standing.unrankable:
        lines.append(f"Source: the current source of submissions/{entry.submission}.")
    return lines


def _history(section: Section, entry: Entry, page_dir: Path, out_dir: Path) -> list[dict]:
    """The other configurations of the entry's submission in its group: its history, linked."""
    group = next(g for g in section.groups if any(e.slug == entry.slug for e in g.entries))
    return [
        {
            "label": other.label,
            "href": _relative(out_dir / entry_page(section, other), page_dir),
            "state": "current" if other.current and other.scored else _state(other),
            "metric": fmt.estimate(other.score) if other.scored else fmt.MISSING,
            "seeds": len(other.scored),
            "date": max(r.finished_at for r in other.runs).date().isoformat(),
            "why": other.excluded or "",
        }
        for other in sorted(group.history(entry), key=lambda e: max(r.finished_at for r in e.runs), reverse=True)
    ]


def render_entry(
    section: Section,
    entry: Entry,
    curve: Plot | None,
    files: dict[RunKey, Path],
    out_dir: Path,
    submission_link: str | None,
) -> str:
    """The page of one entry: what it is, its headline numbers, its hyperparameters, its curves, every seed with
    its files, and the submission's other configurations."""
    page_dir = out_dir / Path(entry_page(section, entry)).parent
    board = board_of(section)
    metric = METRIC_COLUMNS[section.metric]
    headline = []
    if entry.scored:
        headline.append((metric, f"{fmt.estimate(entry.score)} (n={entry.score.n})"))
    if entry.reference is not None and entry.scored:
        vs = versus(entry.reference, entry, section.metric)
        headline.append((f"Δ {metric} vs {board.reference}", difference_text(vs.difference)))
        headline.append((f"speedup vs {board.reference}", speedup_text(vs.speedup)))
    elif entry.is_reference:
        headline.append(("reference", f"this is {board.reference}, which the board compares every entry with"))
    if entry.scored:
        headline.append(("time to target", f"{time_to_target_text(entry)} ({resolution_note(board.eval_every)})"))
    details = [
        (name, cell(entry))
        for name, _, cell in detail_columns(board)
        if (entry.scored or name == "authors") and name not in (metric, "time to target")  # both in the headline
    ]
    details.append(("tuning budget", _tuning(entry)))
    first = entry.runs[0]
    current = next((e for g in section.groups for e in g.entries if e.slug == entry.superseded_by), None)
    downstream = downstream_columns([entry])
    per_task = [(name, cell(entry)) for name, _, cell in downstream[1:]]
    return _ENV.get_template("entry.html.j2").render(
        title=entry.label,
        metric=metric,
        section_title=f"{section.workload} · {section.hardware_class}",
        back=_relative(out_dir / "index.html", page_dir) + f"#{section.slug}",
        submission_link=_relative(out_dir / submission_link, page_dir) if submission_link else None,
        submission=entry.submission,
        status=_state(entry),
        superseded_by=(current.label, _relative(out_dir / entry_page(section, current), page_dir)) if current else None,
        excluded=entry.excluded or "",
        failures=entry.failure_reasons,
        headline=headline,
        details=details,
        hashes=[("submission hash", first.submission_hash), ("workload hash", first.workload_hash)],
        verification=_verification(entry),
        hyperparameters=_hyperparameters(entry),
        changes=", ".join(f"{name}={value}" for name, value in entry.changes),
        hardware=_hardware(entry),
        runs=entry.status_counts,
        curve=curve,
        curve_src=_relative(out_dir / "plots" / curve.file, page_dir) if curve and curve.file else None,
        seeds=_seed_rows(entry, files, page_dir, board),
        energy=board.energy,
        history=_history(section, entry, page_dir, out_dir),
        per_task=per_task,
        per_task_caption=downstream_caption([entry]) if per_task else "",
        energy_note="" if board.energy else ENERGY_NOT_SHOWN,
    )


RunKey = tuple[str, str, str]  # workload, submission, run id: a run's identity (see rank.unique_runs)


def run_key(run: RunResult) -> RunKey:
    return (run.workload, run.submission, run.run_id)


def run_files(results: Sequence[tuple[Path, RunResult]]) -> dict[RunKey, Path]:
    """Each run -> the first result file it was read from (the published copy when its folder is listed first)."""
    out: dict[RunKey, Path] = {}
    for path, run in results:
        out.setdefault(run_key(run), path)
    return out

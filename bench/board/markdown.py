"""The leaderboard as GitHub-flavoured Markdown (``README.md``): tables by tabulate, plots as relative images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tabulate import tabulate

from bench.board.columns import (
    METRIC_COLUMNS,
    RANKED_COLUMNS,
    TEXT_COLUMNS,
    UNRANKED_COLUMNS,
    Column,
    downstream_caption,
    downstream_columns,
)
from bench.board.describe import INTRO, METHODS, budget_line
from bench.board.plots import Plot
from bench.board.rank import Entry, Group, Section


def _cell(text: str) -> str:
    """A table cell may not break the row: pipes are escaped and newlines flattened."""
    return text.replace("|", "\\|").replace("\n", " ")


def _table(entries: Sequence[Entry], columns: Sequence[Column], key: str, link: Callable[[str], str | None]) -> str:
    headers = [f"**{name}**" if name == key else name for name, _, _ in columns]
    rows = []
    for entry in entries:
        row = []
        for name, _, cell in columns:
            text = _cell(cell(entry))
            target = link(entry.submission) if name == "submission" else None
            row.append(f"[{text}]({target})" if target else text)
        rows.append(row)
    align = ["left" if name in TEXT_COLUMNS else "right" for name, _, _ in columns]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=align)


def _group(section: Section, group: Group, link: Callable[[str], str | None]) -> list[str]:
    key = METRIC_COLUMNS[section.metric]
    lines = []
    if not group.official:
        machines = "; ".join(group.machines) or "unknown machines"
        lines += [
            "### Unofficial hardware",
            "",
            (
                f"Runs on machines that do not match {section.hardware_class} ({machines}). "
                "Ranked among themselves only, not against the table above."
            ),
            "",
        ]
    if group.ranked:
        lines += [_table(group.ranked, RANKED_COLUMNS, key, link), ""]
        downstream = downstream_columns(group.ranked)
        if downstream:
            lines += [_table(group.ranked, downstream, key, link), "", f"*{downstream_caption(group.ranked)}*", ""]
    if group.unranked:
        heading = "#### Not ranked" if not group.official else "### Not ranked"
        lines += [heading, "", _table(group.unranked, UNRANKED_COLUMNS, key, link), ""]
    return lines


def render_markdown(
    sections: Sequence[Section], plots: dict[str, list[Plot]], link: Callable[[str], str | None], as_of: str
) -> str:
    """The whole ``README.md``. ``link(submission)`` gives the relative link to its folder, or None if it has none."""
    lines = ["# pretrain-bench leaderboard", "", INTRO, ""]
    if not sections:
        lines += ["No results yet.", ""]
    else:
        runs = sum(len(e.runs) for s in sections for e in s.entries)
        lines += [f"Built from {runs} result files; latest run {as_of}. Methods are described at the end.", ""]
    for section in sections:
        lines += [f"## {section.workload} · {section.hardware_class}", ""]
        if section.spec is not None:
            lines += [section.spec.description.strip(), ""]
        lines += [budget_line(section), ""]
        for group in section.groups:
            lines += _group(section, group, link)
        lines += [f"> **Note:** {note}" for note in section.notes] + ([""] if section.notes else [])
        for plot in plots[section.slug]:
            if plot.file is None:
                lines += [f"*{plot.title}: {plot.caption}*", ""]
            else:
                lines += [f"![{plot.title}](plots/{plot.file})", "", f"*{plot.title}. {plot.caption}*", ""]
    lines += ["## Methods", ""] + [f"- {m}" for m in METHODS] + [""]
    lines += ["Columns:", ""] + [f"- **{name}**: {tip}" for name, tip, _ in RANKED_COLUMNS] + [""]
    return "\n".join(lines)

"""The leaderboard as GitHub-flavoured Markdown (``README.md``): tables by tabulate, plots as relative images.

Text from result files, manifests and workload files is escaped (:func:`escape`): GitHub renders inline HTML and
Markdown syntax, so a failure reason or a submission name could otherwise add links, images or markup to the page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from tabulate import tabulate

from bench.board.columns import (
    ENERGY_NOT_SHOWN,
    METRIC_COLUMNS,
    TEXT_COLUMNS,
    Column,
    board_of,
    downstream_caption,
    downstream_columns,
    headline_columns,
    more_columns,
    split_constant,
    superseded_columns,
    unranked_columns,
)
from bench.board.describe import INTRO, METHODS, budget_line, group_heading, noise_floor, provisional_line
from bench.board.html import entry_page
from bench.board.plots import Plot
from bench.board.rank import MIN_SEEDS, Entry, Group, Section

_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]#|~])")


def escape(text: str) -> str:
    """User text as literal Markdown: HTML escaped, Markdown punctuation backslash-escaped, one line."""
    escaped = html.escape(text, quote=False)  # & < > first, so that the backslashes below are not touched
    escaped = _MARKDOWN_SYNTAX.sub(r"\\\1", escaped.replace("\r", " ").replace("\n", " "))
    return escaped


def _cell(text: str) -> str:
    """A generated cell (numbers, intervals): only what could break the table or open HTML is escaped."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


USER_TEXT_COLUMNS = {"why not ranked", "authors"}  # cells that quote result files or manifests verbatim


def _table(section: Section, entries: Sequence[Entry], columns: Sequence[Column], key: str) -> tuple[str, str]:
    """The table, and the caption sentence for the columns every row shares (moved out of the table)."""
    kept, constant = split_constant(columns, entries)
    headers = [f"**{name}**" if name == key else _cell(name) for name, _, _ in kept]
    rows = []
    for entry in entries:
        row = []
        for name, _, cell in kept:
            if name == "submission":
                text = f"[{escape(entry.submission)}]({entry_page(section, entry)})"
                row.append(text + (f" ({escape(entry.variant)})" if entry.variant else ""))  # a short tag
            else:
                row.append(escape(cell(entry)) if name in USER_TEXT_COLUMNS else _cell(cell(entry)))
        rows.append(row)
    align = ["left" if name in TEXT_COLUMNS else "right" for name, _, _ in kept]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=align)
    shared = "; ".join(f"{name} {value}" for name, value in constant)
    return table, (f"Same for every row: {_cell(shared)}." if shared else "")


def _caption(*parts: str) -> list[str]:
    text = " ".join(p for p in parts if p)
    return [f"*{text}*", ""] if text else []


def _group(section: Section, group: Group) -> list[str]:
    key = METRIC_COLUMNS[section.metric]
    board = board_of(section)
    energy = "" if board.energy else ENERGY_NOT_SHOWN
    lines = []
    heading = group_heading(section, group)
    if heading is not None:
        title, about = heading
        lines += [f"### {escape(title)}", "", escape(about), ""]
    if group.ranked:
        table, shared = _table(section, group.ranked, headline_columns(board, ranked=True), key)
        lines += [table, ""] + _caption(f"Ranked: at least {MIN_SEEDS} scored seeds.", shared, energy)
    if group.provisional:
        table, shared = _table(section, group.provisional, headline_columns(board, ranked=False), key)
        lines += [f"#### Provisional (not ranked: fewer than {MIN_SEEDS} seeds)", "", table, ""]
        lines += _caption(provisional_line(), shared, energy)
    if group.compared:
        table, shared = _table(section, group.compared, more_columns(board), key)
        lines += ["<details><summary>More measures: parameters, downstream and generation scores, MFU, wall time"
                  "</summary>", "", table, ""] + _caption(shared) + ["</details>", ""]
    downstream = downstream_columns(group.compared)
    if downstream:
        table, shared = _table(section, group.compared, downstream, key)
        lines += ["<details><summary>Downstream per task</summary>", "", table, ""]
        lines += _caption(_cell(downstream_caption(group.compared)), shared) + ["</details>", ""]
    if group.superseded:
        table, shared = _table(section, group.superseded, superseded_columns(board), key)
        lines += [f"<details><summary>Earlier configurations ({len(group.superseded)}): superseded sources and "
                  "hand-set values of the submissions above</summary>", "", table, ""]
        lines += _caption("Not ranked: each submission is ranked by its current configuration; these are its "
                          "history, also listed on its page.", shared) + ["</details>", ""]
    if group.unranked:
        table, shared = _table(section, group.unranked, unranked_columns(board), key)
        lines += ["#### Not ranked", "", table, ""] + _caption(shared)
    return lines


def render_markdown(sections: Sequence[Section], plots: dict[str, list[Plot]], as_of: str,
                    reading: Sequence[tuple[str, str, str]] = ()) -> str:
    """The whole ``README.md``; each entry's name links to its HTML page under ``entries/``, and ``reading``
    (title, relative link, what it answers) to the written analyses drawn from these runs."""
    lines = ["# pretrain-bench leaderboard", "", INTRO, ""]
    lines += [f"- [{escape(title)}]({href})" + (f": {escape(about)}" if about else "")
              for title, href, about in reading]
    lines += [""] if reading else []
    if not sections:
        lines += ["No results yet.", ""]
    else:
        runs = sum(len(e.runs) for s in sections for e in s.entries)
        lines += [
            f"Built from {runs} result files; latest run {as_of}. Each entry links to its page (curves, every seed, "
            "result files and logs); [index.html](index.html) is the same board as a web page. Methods are at the end.",
            "",
        ]
    for section in sections:
        lines += [f"## {escape(section.workload)} · {escape(section.hardware_class)}", ""]
        if section.spec is not None:
            lines += [escape(section.spec.description.strip()), ""]
        lines += [_cell(budget_line(section)) + f" Reference baseline: {escape(board_of(section).reference)}.", ""]
        lines += [f"**{_cell(noise_floor(section))}**", ""]
        for group in section.groups:
            lines += _group(section, group)
        lines += [f"> **Note:** {escape(note)}" for note in section.notes] + ([""] if section.notes else [])
        for plot in plots[section.slug]:
            if plot.file is None:
                lines += [f"*{plot.title}: {plot.caption}*", ""]
            else:
                lines += [f"![{plot.title}](plots/{plot.file})", "", f"*{plot.title}. {plot.caption}*", ""]
    lines += ["## Methods", ""] + [f"- {m}" for m in METHODS] + [""]
    return "\n".join(lines)

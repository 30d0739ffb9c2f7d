"""The leaderboard as one static HTML page (``index.html``): inline CSS, no scripts, plots as relative SVG images.

The page opens from file:// with no network. Everything taken from result files (names, failure reasons) is
escaped by Jinja's autoescaping, since a failure reason may contain anything a traceback does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files

import jinja2

from bench.board.columns import (
    METRIC_COLUMNS,
    RANKED_COLUMNS,
    TEXT_COLUMNS,
    UNRANKED_COLUMNS,
    WRAPPED_COLUMNS,
    Column,
    downstream_caption,
    downstream_columns,
)
from bench.board.describe import INTRO, METHODS, budget_line
from bench.board.plots import Plot
from bench.board.rank import Entry, Section

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_PAGE = _ENV.from_string(files("bench.board").joinpath("page.html.j2").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Cell:
    text: str
    cls: str = ""
    tip: str = ""
    href: str | None = None


@dataclass(frozen=True)
class _Table:
    headers: list[_Cell]
    rows: list[list[_Cell]]


def _classes(name: str, key: str) -> str:
    classes = [] if name in TEXT_COLUMNS else ["num"]
    classes += ["wrap"] if name in WRAPPED_COLUMNS else []
    classes += ["key"] if name == key else []
    classes += ["rank"] if name == "rank" else []
    classes += ["reason"] if name == "why not ranked" else []
    return " ".join(classes)


def _table(
    entries: Sequence[Entry], columns: Sequence[Column], key: str, link: Callable[[str], str | None]
) -> _Table | None:
    if not entries or not columns:
        return None
    headers = [_Cell(name, _classes(name, key), tip) for name, tip, _ in columns]
    rows = [
        [
            _Cell(cell(e), _classes(name, key), href=link(e.submission) if name == "submission" else None)
            for name, _, cell in columns
        ]
        for e in entries
    ]
    return _Table(headers, rows)


def render_html(
    sections: Sequence[Section], plots: dict[str, list[Plot]], link: Callable[[str], str | None], as_of: str
) -> str:
    """The whole ``index.html``. ``link(submission)`` gives the relative link to its folder, or None if it has none."""
    views = []
    for s in sections:
        key = METRIC_COLUMNS[s.metric]
        groups = [
            {
                "official": g.official,
                "machines": "; ".join(g.machines) or "unknown machines",
                "ranked": _table(g.ranked, RANKED_COLUMNS, key, link),
                "downstream": _table(g.ranked, downstream_columns(g.ranked), key, link),
                "downstream_caption": downstream_caption(g.ranked),
                "unranked": _table(g.unranked, UNRANKED_COLUMNS, key, link),
            }
            for g in s.groups
        ]
        views.append(
            {
                "slug": s.slug,
                "title": f"{s.workload} · {s.hardware_class}",
                "hardware_class": s.hardware_class,
                "description": s.spec.description.strip() if s.spec else "",
                "budget": budget_line(s),
                "groups": groups,
                "notes": s.notes,
                "plots": plots[s.slug],
            }
        )
    return _PAGE.render(
        intro=INTRO,
        methods=METHODS,
        columns=[_Cell(name, tip=tip) for name, tip, _ in RANKED_COLUMNS],
        sections=views,
        runs=sum(len(e.runs) for s in sections for e in s.entries),
        as_of=as_of,
    )

"""The ``bench`` command line: a thin layer over the package. Each command parses arguments, calls one function,
and prints; user errors (:class:`bench.errors.BenchError`) become a readable message and exit code 1."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from bench import __version__
from bench.errors import BenchError, SpecError
from bench.spec.loading import (
    DEFAULT_WORKLOAD,
    load_submission,
    load_workload,
    project_root,
    submission_dirs,
    workload_files,
    workload_path,
)
from bench.spec.units import format_bytes, format_count, format_duration
from bench.spec.workload import WorkloadSpec
from bench.train.loader import load_recipe_class

app = typer.Typer(
    name="bench",
    help="pretrain-bench: fixed-budget benchmarks for small-scale language-model pretraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()
errors = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Print :class:`BenchError` as a message (one line per problem) instead of a traceback, and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BenchError as exc:
            for line in str(exc).splitlines():
                errors.print(f"[bold red]error:[/] {line}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"pretrain-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """pretrain-bench: fixed-budget benchmarks for small-scale language-model pretraining."""


def _budget_text(spec: WorkloadSpec) -> str:
    parts = []
    if spec.budget.wall_clock is not None:
        parts.append(format_duration(spec.budget.wall_clock))
    if spec.budget.tokens is not None:
        parts.append(f"{format_count(spec.budget.tokens)} tok")
    if spec.budget.flops is not None:
        parts.append(f"{spec.budget.flops:.2g} FLOP")
    return " / ".join(parts)


def _source_text(spec: WorkloadSpec) -> str:
    source = spec.data.source
    if source.kind == "synthetic":
        return f"synthetic (seed {source.seed})"
    if source.kind == "hub":
        return source.path + (f":{source.name}" if source.name else "")
    return ", ".join(source.paths)


@app.command("list")
@user_errors
def list_command() -> None:
    """List workloads and submissions, one line each with the key numbers."""
    workloads = Table(title="Workloads", title_justify="left")
    workloads.add_column("name", no_wrap=True)
    for column in ("data", "train", "tokenizer", "max params", "budget", "hardware", "target"):
        workloads.add_column(column)
    for path in workload_files():
        try:
            spec = load_workload(path)
        except SpecError as exc:
            workloads.add_row(path.stem, f"[red]invalid: {exc.problems[0]}[/]")
            continue
        tokenizer = spec.tokenizer.kind + (f" {spec.tokenizer.vocab_size}" if spec.tokenizer.kind == "bpe" else "")
        workloads.add_row(
            spec.name,
            _source_text(spec),
            format_bytes(spec.data.train_bytes),
            tokenizer,
            format_count(spec.model.max_params),
            _budget_text(spec),
            spec.budget.hardware,
            f"{spec.target.metric} {'<=' if spec.target.direction == 'minimize' else '>='} {spec.target.value:g}",
        )
    console.print(workloads)

    submissions = Table(title="Submissions", title_justify="left")
    submissions.add_column("name", no_wrap=True)
    for column in ("authors", "entry point", "workloads", "description"):
        submissions.add_column(column)
    for folder in submission_dirs():
        try:
            manifest = load_submission(folder)
        except SpecError as exc:
            submissions.add_row(folder.name, f"[red]invalid: {exc.problems[0]}[/]")
            continue
        submissions.add_row(
            manifest.name,
            ", ".join(manifest.authors),
            manifest.entry_point,
            ", ".join(manifest.workloads),
            manifest.description.strip().splitlines()[0],
        )
    console.print(submissions)


def validate_path(path: Path) -> list[str]:
    """Validate one workload file or submission folder; returns the problems (empty when valid)."""
    try:
        if path.is_dir() or path.name == "submission.yaml":
            folder = path if path.is_dir() else path.parent
            manifest = load_submission(folder)
            load_recipe_class(folder, manifest)
            known = {p.stem for p in workload_files()}
            return [
                f"{folder / 'submission.yaml'}: workloads: unknown workload {name!r} (known: {', '.join(sorted(known))})"
                for name in manifest.workloads
                if name not in known
            ]
        load_workload(path)
        return []
    except BenchError as exc:
        return str(exc).splitlines()


@app.command()
@user_errors
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Workload YAML files or submission folders; all of the project's by default."),
    ] = None,
) -> None:
    """Validate workload and submission specs (submissions: manifest, entry point import, recipe API)."""
    targets = paths or [*workload_files(), *submission_dirs()]
    failed = 0
    for path in targets:
        problems = validate_path(path)
        if problems:
            failed += 1
            for problem in problems:
                errors.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]ok[/]    {path}", highlight=False)
    if failed:
        errors.print(f"{failed} of {len(targets)} specs invalid", highlight=False)
        raise typer.Exit(1)
    console.print(f"all {len(targets)} specs valid", highlight=False)


@app.command()
@user_errors
def show(workload: Annotated[str, typer.Argument(help="Workload name or YAML path.")]) -> None:
    """Print the resolved workload spec (defaults filled in, units converted) and its hash."""
    spec = load_workload(workload_path(workload))
    typer.echo(f"# {spec.name}  (hash {spec.content_hash()[:16]})")
    typer.echo(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, width=10_000).rstrip())


@app.command()
@user_errors
def prepare(
    workload: Annotated[str, typer.Option("--workload", "-w", help="Workload name or YAML path.")] = DEFAULT_WORKLOAD,
    cache_dir: Annotated[Path | None, typer.Option(help="Data cache ($BENCH_CACHE or the user cache dir).")] = None,
) -> None:
    """Prepare a workload's data: split, train the tokenizer, write token shards (a second run is a cache hit)."""
    from bench.data.prepare import RichPrepareProgress, format_summary
    from bench.data.prepare import prepare as prepare_data

    path = workload_path(workload)
    spec = load_workload(path)
    with RichPrepareProgress(console) as progress:
        data = prepare_data(spec, path.parent, cache_dir, progress)
    console.print(f"[bold]{spec.name}[/]: {format_summary(data)}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def leaderboard(
    out: Annotated[Path, typer.Option(help="Folder for README.md, index.html and plots/.")] = Path("leaderboard"),
    include: Annotated[
        list[Path] | None, typer.Option(help="More result folders to include, e.g. results/ (repeatable).")
    ] = None,
) -> None:
    """Build the leaderboard pages from leaderboard/results/ (and --include folders)."""
    from bench.board.build import build_leaderboard
    from bench.results import load_results

    root = project_root()
    results = load_results([root / "leaderboard" / "results", *(include or [])])
    if not results:
        raise BenchError(f"no result files under {root / 'leaderboard' / 'results'} or {include or []}")
    files = build_leaderboard(results, out, root)
    console.print(f"{len(results)} results -> {files.markdown}, {files.html} and {len(files.plots)} plots", highlight=False)


@app.command()
@user_errors
def compare(
    a: Annotated[str, typer.Argument(help="Reference submission.")],
    b: Annotated[str, typer.Argument(help="Submission compared with it.")],
    workload: Annotated[str, typer.Option("--workload", "-w", help="Workload name.")] = DEFAULT_WORKLOAD,
    results_dir: Annotated[list[Path] | None, typer.Option(help="Result folders (default: results/).")] = None,
) -> None:
    """Side-by-side table of two submissions with the loss difference and time-to-target speedup, with CIs."""
    from bench.board.compare import compare as compare_runs
    from bench.results import DEFAULT_RESULTS_DIR, load_results

    name = Path(workload).stem if workload.endswith((".yaml", ".yml")) else workload
    table = compare_runs(load_results(results_dir or [DEFAULT_RESULTS_DIR]), a, b, name)
    console.print(table.to_rich())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

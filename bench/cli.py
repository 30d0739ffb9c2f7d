"""The ``bench`` command line: a thin layer over the package. Each command parses arguments, calls one function,
and prints; user errors (:class:`bench.errors.BenchError`) become a readable message and exit code 1."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import typer.core
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bench import __version__
from bench.errors import BenchError, SpecError
from bench.interrupt import describe as describe_interrupt
from bench.interrupt import exit_status as interrupt_status
from bench.interrupt import terminate_as_interrupt
from bench.spec.loading import (
    DEFAULT_WORKLOAD,
    Submission,
    find_submission,
    load_workload,
    parse_yaml,
    project_root,
    submission_dirs,
    unknown_name,
    workload_files,
    workload_path,
)
from bench.results.store import DEFAULT_RESULTS_DIR, PUBLISHED_RESULTS_DIR, new_run_id
from bench.results.schema import RunResult, TrialStatus
from bench.spec.seeds import SYNTAX as SEEDS_SYNTAX, parse_seeds
from bench.spec.units import format_bytes, format_count, format_duration, parse_duration
from bench.spec.workload import WorkloadSpec
from bench.summary import PROSE_WIDTH, print_table, results_table

F = TypeVar("F", bound=Callable[..., Any])

ON_TERMINAL = sys.stdout.isatty()
PIPED_HELP_WIDTH = 10_000
"""Off a terminal (a pipe, a file, ``less``), help is plain text whose lines are never wrapped or cut, so that
``bench run --help | grep seed`` finds whole lines; on a terminal it is Typer's boxed help at the terminal's width."""
HELP_SETTINGS: dict[str, Any] = {
    "rich_markup_mode": "rich" if ON_TERMINAL else None,
    "context_settings": {} if ON_TERMINAL else {"max_content_width": PIPED_HELP_WIDTH,
                                                "terminal_width": PIPED_HELP_WIDTH},
}


class BenchCommand(typer.core.TyperCommand):
    """A command whose help names each value by its metavar (``--seeds SEEDS``, ``WORKLOAD``, ``--out PATH``) and
    flags by nothing, never by Typer's type placeholders (``<str>``, ``<bool>``, ``<list[Path]>``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is not None or getattr(param, "is_flag", False):
                shown_as = None if getattr(param, "is_flag", False) or param.param_type_name == "argument" \
                    else param.metavar  # an argument's name is its metavar already
                param.display_type_rich = lambda ctx, shown_as=shown_as: shown_as  # type: ignore[method-assign]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.display_type_rich = lambda ctx: None  # type: ignore[attr-defined]
        return option


class BenchTyper(typer.Typer):
    """Typer whose commands are :class:`BenchCommand` s."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", BenchCommand)
        return super().command(*args, **kwargs)


app = BenchTyper(
    name="bench",
    help="pretrain-bench: fixed-budget benchmarks for small-scale language-model pretraining.\n\nCommands work on "
         "the project you stand in: the nearest folder upward with workloads/ and submissions/, else the git root "
         "($BENCH_ROOT names another).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    **HELP_SETTINGS,
)
console = Console()
errors = Console(stderr=True)


def user_errors(func: F) -> F:
    """Print :class:`BenchError` as a message (one line per problem) instead of a traceback, and exit 1; say that
    Ctrl-C or SIGTERM (handled alike, :mod:`bench.interrupt`) stopped the command, and exit 130 or 143."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with terminate_as_interrupt() as received:
            try:
                return func(*args, **kwargs)
            except BenchError as exc:
                for line in str(exc).splitlines():
                    errors.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt as caught:
                interrupt = received.interrupt(caught)
                errors.print(f"[bold red]stopped[/] by {describe_interrupt(interrupt)}", highlight=False)
                raise typer.Exit(interrupt_status(interrupt)) from None

    return wrapper  # type: ignore[return-value]


def shown(path: Path) -> str:
    """A folder as messages show it: relative to the current folder when inside it (``results/``), else absolute."""
    path = path.resolve()
    try:
        relative = path.relative_to(Path.cwd().resolve())
    except ValueError:
        relative = path
    return f"{relative}/" if str(relative) != "." else "./"


def write_dir(given: Path | None) -> Path:
    """Where a command writes results: ``--results-dir``, else ``results/`` in the project."""
    return given if given is not None else project_root() / DEFAULT_RESULTS_DIR


READ_DIRS_HELP = ("Result folders to read, repeatable (default: results/ and leaderboard/results/ in the project; "
                  "a run in both counts once).")
WRITE_DIR_HELP = "Where result files are written (default: results/ in the project)."


def read_dirs(given: list[Path] | None) -> list[Path]:
    """Where a command reads results: the ``--results-dir`` folders, else the project's ``results/`` (what was run
    here) and ``leaderboard/results/`` (what is published); a run found in both counts once."""
    if given:
        return list(given)
    root = project_root()
    return [root / DEFAULT_RESULTS_DIR, root / PUBLISHED_RESULTS_DIR]


def read_results(dirs: list[Path]) -> list[RunResult]:
    """The results under ``dirs``, each run once, after saying on stderr which folders were read and what each held
    (so an empty answer says where it looked)."""
    from bench.board.rank import unique_runs
    from bench.results.store import load_result_files

    found = load_result_files(dirs)
    counts = []
    for folder in dirs:
        inside = sum(1 for path, _ in found if path.resolve().is_relative_to(folder.resolve()))
        counts.append(f"{shown(folder)} ({inside if folder.exists() else 'missing'})")
    errors.print(f"read {', '.join(counts)}", highlight=False, markup=False, soft_wrap=True)
    return unique_runs(result for _, result in found)


def known_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``name`` if it is among ``known`` (a workload or submission name); else an error listing the known ones."""
    known = set(known)
    if name not in known:
        raise BenchError(unknown_name(kind, name, known, project_root()))
    return name


def workload_name(workload: str) -> str:
    """A workload option as a name: ``workloads/tiny.yaml`` -> ``tiny``."""
    return Path(workload).stem if workload.endswith((".yaml", ".yml")) else workload


def dump_yaml(data: Any) -> str:
    """YAML for people: multi-line text (a workload's notes, a description) as a literal block, never a quoted
    string with escaped line breaks."""
    return yaml.dump(data, Dumper=_ReadableDumper, sort_keys=False, width=10_000, allow_unicode=True).rstrip()


class _ReadableDumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" not in value.strip():
        return dumper.represent_scalar("tag:yaml.org,2002:str", value)
    # A literal block holds no space at a line's end (PyYAML would fall back to a quoted string): shown without it.
    text = "\n".join(line.rstrip() for line in value.splitlines()) + ("\n" if value.endswith("\n") else "")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")


_ReadableDumper.add_representer(str, _text)


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
            workloads.add_row(Text(path.stem), Text(f"invalid: {exc.problems[0]}", style="red"))
            continue
        tokenizer = spec.tokenizer.kind + (f" {spec.tokenizer.vocab_size}" if spec.tokenizer.kind == "bpe" else "")
        workloads.add_row(*map(Text, (  # Text: a spec's own words are never read as markup
            spec.name,
            _source_text(spec),
            format_bytes(spec.data.train_bytes),
            tokenizer,
            format_count(spec.model.max_params),
            _budget_text(spec),
            spec.budget.hardware,
            f"{spec.target.metric} {'<=' if spec.target.direction == 'minimize' else '>='} {spec.target.value:g}",
        )))
    print_table(console, workloads)

    submissions = Table(title="Submissions", title_justify="left")
    submissions.add_column("name", no_wrap=True)
    for column in ("authors", "entry point"):
        submissions.add_column(column)
    submissions.add_column("workloads", max_width=PROSE_WIDTH // 2)  # a baseline declares every workload
    submissions.add_column("description", max_width=PROSE_WIDTH)
    for folder in submission_dirs():
        try:
            manifest = find_submission(str(folder)).manifest
        except SpecError as exc:
            submissions.add_row(Text(folder.name), Text(f"invalid: {exc.problems[0]}", style="red"))
            continue
        submissions.add_row(*map(Text, (
            manifest.name,
            ", ".join(manifest.authors),
            manifest.entry_point,
            ", ".join(manifest.workloads),
            manifest.description.strip().splitlines()[0],
        )))
    print_table(console, submissions)


def validate_path(path: Path) -> list[str]:
    """Validate one workload file or submission folder; returns the problems (empty when valid)."""
    try:
        if path.is_dir() or path.name == "submission.yaml":
            from bench.harness.configs import Check, describe  # imports torch (or a box does): only for recipes

            submission = find_submission(str(path if path.is_dir() else path.parent))
            describe(submission, [Check({}, w) for w in [None, *submission.manifest.workloads]], search_space=True)
            known = {p.stem for p in workload_files()}
            return [
                f"{submission.manifest_path}: workloads: unknown workload {name!r} (known: {', '.join(sorted(known))})"
                for name in submission.manifest.workloads
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
        typer.Argument(metavar="PATH",
                       help="Workload YAML files or submission folders; all of the project's by default."),
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
                errors.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]ok[/]    {escape(str(path))}", highlight=False, soft_wrap=True)
    if failed:
        errors.print(f"{failed} of {len(targets)} specs invalid", highlight=False)
        raise typer.Exit(1)
    console.print(f"all {len(targets)} specs valid", highlight=False)


@app.command()
@user_errors
def show(workload: Annotated[str, typer.Argument(metavar="WORKLOAD", help="Workload name or YAML path.")]) -> None:
    """Print the resolved workload spec (defaults filled in, units converted) and its hash."""
    spec = load_workload(workload_path(workload))
    typer.echo(f"# {spec.name}  (hash {spec.content_hash()[:16]})")
    typer.echo(dump_yaml(spec.model_dump(mode="json")))


@app.command("show-submission")
@user_errors
def show_submission(
    submission: Annotated[str, typer.Argument(metavar="SUBMISSION", help="Submission name or folder.")],
    workload: Annotated[str | None, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Also print the configuration it runs with there.")] = None,
) -> None:
    """Print the complete manifest of a submission (`extends` applied), its source hash, and the resolved, typed
    configuration its recipe runs with (every field, defaults filled in), on each workload it enters."""
    from bench.harness.configs import Check, describe

    found = find_submission(submission)
    if workload is not None:
        workload = load_workload(workload_path(workload)).name  # an unknown workload is an error, not a guess
    lineage = " <- ".join(folder.name for folder in found.lineage)
    typer.echo(f"# {found.name}  (source hash {found.source_hash()[:16]}; {lineage})")
    typer.echo(dump_yaml(found.manifest.model_dump(mode="json", exclude_none=True)))
    names = [workload] if workload else list(found.manifest.workloads) or [None]
    described = describe(found, [Check({}, name if name in found.manifest.workloads else None) for name in names])
    kind = f"{described.recipe}'s Config" if described.typed else "untyped: the recipe declares no Config"
    for name, values in zip(names, described.configs):
        typer.echo(f"\n# resolved configuration on {name or 'any workload'} ({kind})")
        typer.echo(dump_yaml(values))


@app.command()
@user_errors
def prepare(
    workload: Annotated[str, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Workload name or YAML path.")] = DEFAULT_WORKLOAD,
    cache_dir: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Data cache ($BENCH_CACHE or the user cache dir).")] = None,
) -> None:
    """Prepare a workload's data (split, tokenizer, token shards; a second run is a cache hit) and download the
    datasets of its downstream tasks, so that later runs work offline."""
    from bench.downstream.runner import prefetch

    from bench.driver import prepare_with_progress

    path = workload_path(workload)
    spec = load_workload(path)
    prepare_with_progress(spec, path.parent, cache_dir, console)
    for failure in prefetch([task.task for task in spec.eval.downstream]):
        errors.print(f"[yellow]warning:[/] downstream {escape(failure.reason)}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def leaderboard(
    out: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Folder for README.md, index.html and plots/ (default: leaderboard/ in the project).")
    ] = None,
    include: Annotated[list[Path] | None, typer.Option(
        metavar="PATH", help="More result folders to include, e.g. results/ (repeatable).")] = None,
    include_submitted: Annotated[bool, typer.Option(
        help="Also rank results nobody has verified yet, apart from the verified ones.")] = False,
) -> None:
    """Build the leaderboard pages from the published results, leaderboard/results/ (and --include folders).

    Ranks verified results (bench verify, or the maintainers' own runs in leaderboard/versions.json); results only
    their submitter stands behind are shown apart, and ranked there with --include-submitted."""
    from bench.board.build import build_leaderboard
    from bench.board.html import run_files
    from bench.results.store import load_result_files

    root = project_root()
    dirs = [root / PUBLISHED_RESULTS_DIR, *(include or [])]
    found = load_result_files(dirs)
    results = [result for _, result in found]
    if not results:
        raise BenchError(f"no result files under {', '.join(map(shown, dirs))}; publish results by copying them into "
                         f"{shown(root / PUBLISHED_RESULTS_DIR)}, or add a folder with --include results")
    out = out if out is not None else root / "leaderboard"
    files = build_leaderboard(results, out, root, run_files(found), include_submitted=include_submitted)
    copies = len(results) - files.runs  # the same run in two listed folders (--include leaderboard/results)
    console.print(
        f"{files.runs} results" + (f" ({copies} more file(s) were copies of them, counted once)" if copies else "")
        + f" -> {files.markdown}, {files.html}, {len(files.entries)} entry pages and {len(files.plots)} plots",
        highlight=False, markup=False, soft_wrap=True,
    )


@app.command()
@user_errors
def verify(
    results: Annotated[list[Path], typer.Argument(metavar="RESULT...", help="Result files to verify.")],
    reruns: Annotated[int | None, typer.Option(
        min=2, metavar="INTEGER", help="Fresh seeds to re-run per configuration (default: as many as it claims, at "
                                       "least 2).")] = None,
    address: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="Ray cluster to join (default: $RAY_ADDRESS, else a local instance).")] = None,
    offline: Annotated[bool, typer.Option(
        help="Never contact the Hugging Face Hub (use what `bench prepare` cached).")] = False,
    progress: Annotated[bool, typer.Option(help="Live table of all trials.")] = True,
) -> None:
    """Re-run each result's configuration on fresh seeds here and say whether its claimed scores are reproduced.

    Writes one record per configuration to leaderboard/verifications/ (who, when, which machine, the re-runs, the
    verdict), which the board reads; exits 2 when any is not reproduced or inconclusive."""
    from bench.results.verification import Verdict, reruns_dir
    from bench.verify import verify as verify_results

    root = project_root()
    project_line(console, reruns_dir(root))
    records = verify_results(results, root, reruns, address=address, progress=progress, offline=offline)
    table = Table(title=Text("verifications"), title_justify="left")
    for column in ("submission", "workload", "claimed", "re-runs", "verdict", "record"):
        table.add_column(column, no_wrap=column != "verdict")
    for path, made in records:
        scored = [r.value for r in made.reruns if r.value is not None]
        table.add_row(made.submission, made.workload, f"{len(made.claimed)} seed(s)",
                      f"{len(scored)} of {len(made.reruns)} scored", Text(f"{made.verdict.value}: {made.reason}"),
                      shown(path).rstrip("/"))
    print_table(console, table)
    if any(made.verdict is not Verdict.reproduced for _, made in records):
        raise typer.Exit(2)


@app.command()
@user_errors
def vouch(
    results: Annotated[list[Path], typer.Argument(metavar="RESULT...", help="Result files you ran yourself.")],
    note: Annotated[str, typer.Option(metavar="TEXT", help="Which runs these are: when, where, why.")],
    by: Annotated[str | None, typer.Option(
        metavar="NAME", help="Who vouches (default: git's user.name, else $USER).")] = None,
) -> None:
    """Maintainers: record results you ran yourself as verified, without a re-run, in leaderboard/versions.json.

    Records each result's source as a known version and each result by its content digest, so the board marks them
    verified by you (an edited copy is not)."""
    from datetime import date

    from bench.results.registry import read_registry, vouching, write_registry
    from bench.results.store import read_result
    from bench.verify import identity

    root = project_root()
    found = [read_result(path) for path in results]
    path = write_registry(root, vouching(read_registry(root), found, by or identity(root), note, date.today()))
    console.print(f"{len(found)} result(s) vouched for in {shown(path).rstrip('/')}", highlight=False, markup=False,
                  soft_wrap=True)


@app.command()
@user_errors
def compare(
    a: Annotated[str, typer.Argument(metavar="A", help="Reference submission.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Submission compared with it.")],
    workload: Annotated[str, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Workload name.")] = DEFAULT_WORKLOAD,
    results_dir: Annotated[list[Path] | None, typer.Option(metavar="PATH", help=READ_DIRS_HELP)] = None,
) -> None:
    """Side-by-side table of two submissions with the loss difference and time-to-target speedup, with CIs."""
    from bench.board.compare import compare as compare_runs
    from bench.board.rank import compared_hash

    dirs = read_dirs(results_dir)
    results = read_results(dirs)
    files = {p.stem: p for p in workload_files()}
    name = known_name("workload", workload_name(workload), [*files, *(r.workload for r in results)])
    for submission in (a, b):
        known_name("submission", submission, [p.name for p in submission_dirs()] + [r.submission for r in results])
    spec = load_workload(files[name]) if name in files else None
    compared, _ = compared_hash(spec, [r for r in results if r.workload == name])  # what the board compares under
    try:
        table = compare_runs(results, a, b, name, compared)
    except BenchError as exc:
        raise BenchError(f"{exc}\nread {', '.join(map(shown, dirs))}; name other folders with --results-dir "
                         "(repeatable)") from None
    print_table(console, table.to_rich())


@app.command()
@user_errors
def new(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new submission, e.g. my-recipe.")],
    author: Annotated[str, typer.Option(metavar="TEXT", help="Author to put in the manifest.")] = "Your Name",
) -> None:
    """Scaffold submissions/NAME/ in the project (manifest, working recipe, README) from a minimal example."""
    from bench.scaffold import scaffold_submission

    folder = scaffold_submission(name, project_root() / "submissions", author)
    console.print(f"created {folder}: edit recipe.py and submission.yaml, then `bench validate {folder}`",
                  highlight=False, markup=False, soft_wrap=True)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``lr=3e-3`` -> ``("lr", 0.003)``: numbers, booleans and lists are parsed, anything else stays a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise BenchError(f"--set {text!r}: expected NAME=VALUE, e.g. --set lr=3e-3")
    raw = raw.strip()
    for parse in (int, float):
        try:
            return key.strip(), parse(raw)
        except ValueError:
            pass
    try:
        value = parse_yaml(raw, f"--set {key.strip()}")
    except SpecError:
        value = raw
    return key.strip(), value if value is not None else raw


def _submissions(names: list[str], workload: str | None = None) -> list[Submission]:
    """The submissions ``names`` names; ``all``: every submission of the project that enters ``workload``."""
    if names == ["all"]:
        found = [find_submission(str(folder)) for folder in submission_dirs()]
        found = [s for s in found if workload is None or s.enters(workload)]
        if not found:
            raise BenchError(f"no submissions under {project_root() / 'submissions'} enter {workload!r}")
        return found
    return [find_submission(name) for name in names]


def results_json(results: Sequence[RunResult]) -> str:
    """Results as one JSON array of result-file objects, for scripts (``jq``, CI) rather than people."""
    return json.dumps([result.model_dump(mode="json") for result in results], indent=2)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The environment variables ``values`` set for the duration, then as they were (in-process callers, tests,
    keep theirs)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _parse_resources(text: str) -> dict[str, float]:
    """``--resources '{"node2": 1}'``: a JSON object of resource names and positive amounts."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"--resources: not JSON ({exc}); e.g. --resources '{{\"node2\": 1}}'") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        for k, v in value.items()
    ):
        raise BenchError(f"--resources: expected an object of names and positive amounts, got {text!r}")
    reserved = sorted(set(value) & {"CPU", "GPU", "memory", "object_store_memory"})
    if reserved:
        raise BenchError(f"--resources: {', '.join(reserved)} come from the workload's hardware class, not --resources")
    return {k: float(v) for k, v in value.items()}


def _resolved_workload(workload: str, wall_clock: str | None) -> tuple[Path, WorkloadSpec]:
    path = workload_path(workload)
    spec = load_workload(path)
    if wall_clock is not None:
        try:
            seconds = parse_duration(wall_clock)
        except ValueError as exc:
            raise BenchError(f"--wall-clock: {exc}") from None
        spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"wall_clock": seconds})})
    return path, spec



def tracking(track: str | None) -> AbstractContextManager[None]:
    """``--track`` for the duration of a command: ``$BENCH_TRACK`` set to it (the trial workers build their trackers
    from it, :func:`bench.track.tracker_from_env`), and ``$BENCH_TRACK_DIR`` made absolute (default: ``runs/`` in
    the project), since a worker does not stand where the command does. Bad names fail before anything runs; W&B
    online without a login is a warning here rather than a silent miss in every trial's log."""
    from bench.track import DEFAULT_DIR, DIR_ENV, ENV, parse_backends, wandb_login_problem

    text = track if track is not None else os.environ.get(ENV)
    backends = parse_backends(text, "--track" if track is not None else f"${ENV}")
    if not backends:
        return _environment({})
    if problem := wandb_login_problem(backends):
        errors.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    folder = Path(os.environ.get(DIR_ENV) or project_root() / DEFAULT_DIR).resolve()
    errors.print(f"tracking to {', '.join(backends)} under {shown(folder)}", highlight=False, markup=False,
                 soft_wrap=True)
    return _environment({ENV: ",".join(backends), DIR_ENV: str(folder)})


EXECUTOR_HELP = ("Where trials run: ray (Ray workers, one process per trial; the default) or local (this process, one "
                 "trial after another, no Ray: debugging, and a machine without Ray).")
TRACK_HELP = ("Track each trial live: tensorboard, wandb (online; WANDB_MODE=offline also keeps it offline) or "
              "wandb-offline, comma-separated (default: $BENCH_TRACK, else off); files under $BENCH_TRACK_DIR, else "
              "runs/ in the project. Needs the track extra.")


def run_seeds(seeds: str | None, seed: int | None, spec: WorkloadSpec) -> list[int]:
    """The seeds ``--seeds`` / ``--seed`` name, else the workload's count of them."""
    if seeds is not None and seed is not None:
        raise BenchError("--seeds and --seed: give one of them (--seed 3 is --seeds 3..3)")
    if seed is not None:
        return [seed]
    return parse_seeds(seeds) if seeds is not None else list(range(spec.seeds))


def project_line(out: Console, results_dir: Path) -> None:
    """The header line of a command that trains: which project it runs, where its results go."""
    out.print(f"project {project_root()}, results {shown(results_dir)}", highlight=False, markup=False,
              soft_wrap=True)


@app.command()
@user_errors
def run(
    workload: Annotated[str, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Workload name or YAML path.")] = DEFAULT_WORKLOAD,
    submission: Annotated[list[str] | None, typer.Option(
        "--submission", "-s", metavar="SUBMISSION", help="Submission name(s), repeatable, or 'all' (default: the "
                                                         "workload's reference baseline).")] = None,
    seeds: Annotated[str | None, typer.Option(
        metavar="SEEDS", help=f"Seeds per submission: {SEEDS_SYNTAX} (default: the workload's count).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, metavar="SEED", help="One seed, e.g. --seed 3.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="NAME=VALUE", help="Override a hyperparameter: --set lr=3e-3 (repeatable).")] = None,
    results_dir: Annotated[Path | None, typer.Option(metavar="PATH", help=WRITE_DIR_HELP)] = None,
    address: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="Ray cluster to join (default: $RAY_ADDRESS, else a local instance).")] = None,
    executor: Annotated[str, typer.Option(metavar="EXECUTOR", help=EXECUTOR_HELP)] = "ray",
    wall_clock: Annotated[str | None, typer.Option(
        metavar="DURATION", help="Replace the workload's time budget (e.g. 20s for a smoke run); the result's "
                                 "workload hash then differs from the leaderboard's.")] = None,
    device: Annotated[str | None, typer.Option(
        metavar="DEVICE", help="torch device (default: cuda:0 if available, else cpu).")] = None,
    downstream: Annotated[bool, typer.Option(help="Run the workload's downstream tasks after training.")] = True,
    offline: Annotated[bool, typer.Option(
        help="Never contact the Hugging Face Hub (use what `bench prepare` cached).")] = False,
    progress: Annotated[bool, typer.Option(help="Live table of all trials.")] = True,
    progress_every: Annotated[str | None, typer.Option(
        metavar="DURATION", help="Off a terminal, and in each trial's log: a progress line this often (e.g. 30s; 0: "
                                 "none; default $BENCH_PROGRESS_EVERY, else 10s).")] = None,
    track: Annotated[str | None, typer.Option(metavar="TRACKERS", help=TRACK_HELP)] = None,
    strict: Annotated[bool, typer.Option(help="Exit with status 2 when any trial is not ok (for CI).")] = False,
    save_model: Annotated[bool, typer.Option(
        help="Save each trained model beside its result, for `bench eval` later.")] = False,
    json_: Annotated[bool, typer.Option(
        "--json", help="Print the results as a JSON array on stdout (human output goes to stderr).")] = False,
    checkpoint_every: Annotated[str | None, typer.Option(
        metavar="DURATION", help="Checkpoint each trial every this much training clock (e.g. 5m; 0: never; default: "
                                 "10m for workloads of 1h or more, else never), so that a trial whose worker dies "
                                 "resumes where it was.")] = None,
    retries: Annotated[int | None, typer.Option(
        min=0, metavar="INTEGER", help="Run a trial again this many times when its worker process or node dies, from "
                                       "its last checkpoint (default: 1 when checkpointing, else 0).")] = None,
    resources: Annotated[str | None, typer.Option(
        metavar="JSON", help="Custom Ray resources each trial needs, as JSON: '{\"node2\": 1}' places trials on nodes "
                             "started with `ray start --resources '{\"node2\": 1}'`.")] = None,
    data_timeout: Annotated[str | None, typer.Option(
        metavar="DURATION", help="Stop a trial as failed when it has not started training this long after its worker "
                                 "started (e.g. 30m): preparing data on a node without it can be slow.")] = None,
    any_workload: Annotated[bool, typer.Option(
        help="Run a submission on a workload its manifest does not enter (with its common hyperparameters); the "
             "result says so and is never ranked.")] = False,
) -> None:
    """Train submissions on a workload under the harness (through Ray) and write one result file per trial."""
    from bench import driver
    from bench.executor.outcome import ResultsNotSaved, RunInterrupted
    from bench.executor.progress import PROGRESS_ENV, parse_interval, progress_interval
    from bench.harness.plan import TrialRequest, seed_major

    every = parse_interval(progress_every, "--progress-every") if progress_every is not None else progress_interval()
    path, spec = _resolved_workload(workload, wall_clock)
    submissions = _submissions(submission or [spec.reference], spec.name)
    chosen_seeds = run_seeds(seeds, seed, spec)
    overrides = dict(parse_assignment(item) for item in set_ or [])
    results_dir = write_dir(results_dir)
    checkpoint_s = None
    if checkpoint_every is not None:
        try:
            checkpoint_s = 0.0 if checkpoint_every.strip() in ("0", "off") else parse_duration(checkpoint_every) or 0.0
        except ValueError as exc:
            raise BenchError(f"--checkpoint-every: {exc}") from None
    extra = _parse_resources(resources) if resources else {}
    try:
        data_limit = parse_duration(data_timeout) if data_timeout is not None else None
    except ValueError as exc:
        raise BenchError(f"--data-timeout: {exc}") from None
    requests = [
        TrialRequest(
            workload=spec, workload_dir=str(path.parent), submission_dir=str(each.folder), seed=trial_seed,
            overrides=overrides, overrides_from="--set", run_id=new_run_id(trial_seed), device=device,
            downstream=downstream, offline=offline, save_model=save_model, checkpoint_every=checkpoint_s,
            retries=retries, resources=extra, data_timeout=data_limit, any_workload=any_workload,
        )
        for each, trial_seed in seed_major(submissions, chosen_seeds)
    ]
    unsaved = None
    out = errors if json_ else console
    project_line(out, results_dir)
    execution = driver.Execution(results_dir, address, progress, executor=executor)
    try:  # the board reads the interval from the environment, and so do the workers of a local Ray
        with _environment({PROGRESS_ENV: str(every)}), tracking(track):
            results = driver.run(requests, execution, submissions)
    except RunInterrupted as interrupted:
        print_table(out, results_table(interrupted.results, f"{spec.name}: interrupted"))
        if json_:
            typer.echo(results_json(interrupted.results))
        raise interrupted.by from None  # user_errors says by what, and exits 130 (Ctrl-C) or 143 (SIGTERM)
    except ResultsNotSaved as not_saved:
        results, unsaved = not_saved.results, not_saved
    print_table(out, results_table(results, f"{spec.name} ({spec.budget.hardware}): results in {shown(results_dir)}"))
    if json_:
        typer.echo(results_json(results))
    if unsaved is not None:
        for line in str(unsaved).splitlines():
            errors.print(f"[bold red]not saved:[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if strict and any(result.status is not TrialStatus.ok for result in results):
        raise typer.Exit(2)


@app.command("eval")
@user_errors
def eval_command(
    result: Annotated[Path | None, typer.Argument(
        metavar="RESULT", help="Result file of a run made with --save-model.", show_default=False)] = None,
    task: Annotated[list[str] | None, typer.Option(
        "--task", "-t", metavar="TASK", help="lm-eval task, repeatable (default: the workload's).")] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, metavar="INTEGER", help="Evaluate at most this many examples per task.")] = None,
    num_fewshot: Annotated[int | None, typer.Option(
        min=0, metavar="INTEGER", help="Few-shot examples (default: the workload's, else 0).")] = None,
    workload: Annotated[str | None, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Workload for tokenizer and tasks (default: the run's own).")
    ] = None,
    device: Annotated[str | None, typer.Option(
        metavar="DEVICE", help="torch device (default: cuda:0 if available, else cpu).")] = None,
    offline: Annotated[bool, typer.Option(help="Never contact the Hugging Face Hub.")] = False,
    include_path: Annotated[list[Path] | None, typer.Option(
        "--include-path", metavar="PATH", help="Folder of custom lm-eval task YAMLs (repeatable).")] = None,
    log_samples: Annotated[
        bool, typer.Option(help="Also write lm-eval's per-sample records (RECORD.samples.jsonl beside the scores).")
    ] = False,
    result_option: Annotated[Path | None, typer.Option(
        "--result", "-r", metavar="RESULT", hidden=True, help="Deprecated: pass the result file as an argument.")
    ] = None,
) -> None:
    """Re-run downstream evaluation on a saved model; the scores go to a new file beside the result."""
    from bench.downstream.saved import evaluate_saved, saved_run, workload_for, write_evaluation, write_samples
    from bench.spec.workload import DownstreamTask
    from bench.train.runtime import pick_device

    if result_option is not None:
        errors.print("[yellow]warning:[/] --result is deprecated: pass the result file as an argument, as `bench "
                     "export` takes it: bench eval RESULT", highlight=False, soft_wrap=True)
    if (result is None) == (result_option is None):
        raise BenchError("bench eval: name one result file: bench eval results/WORKLOAD/SUBMISSION/RUN_ID.json")
    run = saved_run(result or result_option)
    path, spec, warning = workload_for(run, workload)
    if warning:
        errors.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    tasks = [DownstreamTask(task=name) for name in task] if task else list(spec.eval.downstream)
    tasks = [t.model_copy(update={k: v for k, v in (("limit", limit), ("num_fewshot", num_fewshot)) if v is not None})
             for t in tasks]
    samples: dict[str, list[dict[str, Any]]] | None = {} if log_samples else None
    evaluation = evaluate_saved(run, spec, path.parent, tasks, pick_device(device), offline=offline,
                                include_paths=include_path or [], samples=samples)
    written = write_evaluation(run, evaluation)
    if samples is not None:
        console.print(f"samples in {write_samples(written, samples)}", highlight=False, markup=False, soft_wrap=True)
    title = Text(f"{run.result.submission} seed {run.result.seed} ({run.result.run_id})")
    table = Table(title=title, title_justify="left")
    for column in ("task", "metric", "score", "± stderr", "chance", "examples"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right", no_wrap=True)
    for score in evaluation.downstream:
        table.add_row(Text(score.task), Text(score.metric), f"{score.value:.4f}",
                      f"{score.stderr:.4f}" if score.stderr is not None else "-",
                      f"{score.chance:.4f}" if score.chance is not None else "-", str(score.samples))
    print_table(console, table)
    for failure in evaluation.downstream_failures:
        errors.print(f"[red]failed:[/] {escape(f'{failure.task}: {failure.reason}')}", highlight=False, soft_wrap=True)
    console.print(f"recorded in {written}", highlight=False, markup=False, soft_wrap=True)
    if evaluation.downstream_failures:
        raise typer.Exit(1)


@app.command()
@user_errors
def tune(
    workload: Annotated[str, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Workload name or YAML path.")] = DEFAULT_WORKLOAD,
    submission: Annotated[str, typer.Option(
        "--submission", "-s", metavar="SUBMISSION", help="Submission whose search_space to sweep.")] = "adamw-baseline",
    trials: Annotated[int, typer.Option(min=1, metavar="INTEGER", help="Configurations to try (Sobol points).")] = 8,
    seed: Annotated[int, typer.Option(
        min=0, metavar="SEED", help="Sampler seed and training seed of every trial.")] = 0,
    results_dir: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Where result files go (default: results/ in the project).")] = None,
    address: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Ray cluster to join.")] = None,
    executor: Annotated[str, typer.Option(metavar="EXECUTOR", help=EXECUTOR_HELP)] = "ray",
    downstream: Annotated[bool, typer.Option(help="Run downstream tasks after each trial.")] = False,
    progress: Annotated[bool, typer.Option(help="Live table of all trials.")] = True,
    track: Annotated[str | None, typer.Option(metavar="TRACKERS", help=TRACK_HELP)] = None,
    resume: Annotated[str | None, typer.Option(
        metavar="SWEEP_ID", help="Continue sweep SWEEP_ID: its trials with results are not run again (same Sobol "
                                 "points; --trials and --seed come from its record).")] = None,
    rerun_seeds: Annotated[int, typer.Option(
        min=0, metavar="COUNT", help="Re-run the sweep's best configuration on this many fresh seeds, the lowest "
                                     "seeds the sweep did not train with (ranked, with the sweep's budget).")] = 0,
    record: Annotated[bool, typer.Option(
        help="Write the sweep (budget, search space, trials, chosen configuration) to submissions/NAME/tuning.md.")] = False,
    rerun_on_current_code: Annotated[bool, typer.Option(
        help="With --resume and --rerun-seeds: re-run a finished sweep's declared best on the code and workload as "
             "they are now (after a change to the harness, say); its trials do not run again.")] = False,
) -> None:
    """Sweep a submission's search space (quasi-random, seeded); report the best configuration and all trials."""
    from bench.tune import tune as run_sweep

    path, spec = _resolved_workload(workload, None)
    chosen = find_submission(submission)
    results_dir = write_dir(results_dir)
    project_line(console, results_dir)
    with tracking(track):
        report = run_sweep(spec, path.parent.resolve(), chosen, trials, seed, results_dir, address, progress,
                           downstream=downstream, resume=resume, rerun_seeds=rerun_seeds, record=record,
                           rerun_on_current_code=rerun_on_current_code, executor=executor)
    if resume is not None:
        console.print(f"resumed {report.sweep_id}: ran {len(report.ran)} of {len(report.results)} trial(s)",
                      highlight=False, markup=False, soft_wrap=True)
    print_table(console, results_table(report.results, f"sweep {report.sweep_id}"))
    if report.reruns:
        print_table(console, results_table(report.reruns, f"best of {report.sweep_id} on fresh seeds"))
    console.print(report.markdown, highlight=False, markup=False, soft_wrap=True)
    if report.record_path is not None:
        console.print(f"recorded in {report.record_path}", highlight=False, markup=False, soft_wrap=True)
    if report.best is None:
        raise BenchError("no trial of the sweep finished ok")
    console.print(f"best: {report.best.hyperparameters}  ({report.table_path})", highlight=False, markup=False,
                  soft_wrap=True)


@app.command()
@user_errors
def calibrate(
    threads: Annotated[int | None, typer.Option(
        min=1, metavar="INTEGER", help="torch threads (default: torch's, all cores).")] = None,
    dtype: Annotated[str, typer.Option(metavar="DTYPE", help="fp32 or bf16.")] = "fp32",
    device: Annotated[str, typer.Option(metavar="DEVICE", help="torch device.")] = "cpu",
    workload: Annotated[str | None, typer.Option(
        "--workload", "-w", metavar="WORKLOAD",
        help="Instead: time the workload's reference probe on this host (its budget.calibration), for its "
             "reference_step_s on the class's reference host.")] = None,
    rounds: Annotated[int, typer.Option(min=1, metavar="INTEGER", help="Probe measurements with --workload.")] = 10,
) -> None:
    """Re-measure this machine's peak FLOP/s (CPUs and GPUs without a datasheet entry), which MFU is measured
    against; trials reuse the measurement. With --workload, time the workload's reference probe instead, which
    calibrates its training clock. Run it on an idle machine."""
    import torch

    if workload is not None:
        import statistics

        from bench.harness.calibration import measure_reference

        path = workload_path(workload)
        spec = load_workload(path)
        chosen = torch.device(device if spec.budget.gpus else "cpu")
        steps = measure_reference(spec, path.parent, rounds, chosen)
        median = statistics.median(steps)
        spread = (max(steps) - min(steps)) / median
        console.print(f"{spec.name}: probe step {median:.5f} s (median of {rounds}; range {min(steps):.5f}-"
                      f"{max(steps):.5f}, {spread:.1%}) on {cpu_description()}", highlight=False, markup=False,
                      soft_wrap=True)
        console.print(f"  reference_step_s: {median:.5f}", highlight=False, markup=False)
        return

    from bench.measure.peak import CALIBRATION_FILE, machine_peak

    if threads is not None:
        torch.set_num_threads(threads)
    measured = machine_peak(torch.device(device), dtype, remeasure=True)
    state = "idle" if measured.idle else f"NOT idle: other processes used {measured.others:.0%} of the cores"
    console.print(f"{measured.device_name}, {measured.dtype}, {measured.threads} threads: "
                  f"{measured.flops_per_s / 1e9:.1f} GFLOP/s ({state}); saved in the cache's {CALIBRATION_FILE}",
                  highlight=False, markup=False, soft_wrap=True)
    if not measured.idle:
        raise typer.Exit(1)


def cpu_description() -> str:
    """This host's processor, as the results' fingerprint identifies it."""
    from bench.measure.hardware import cpu_identity, cpu_model

    identity = cpu_identity()
    return (f"{cpu_model()} ({identity.get('cpu_vendor')}, family {identity.get('cpu_family')} model "
            f"{identity.get('cpu_model_number')} stepping {identity.get('cpu_stepping')})")


@app.command()
@user_errors
def check(
    update: Annotated[bool, typer.Option(help="Re-measure and rewrite the reference results (deliberately).")] = False,
    submission: Annotated[list[str] | None, typer.Option(
        "--submission", "-s", metavar="SUBMISSION", help="Baselines to check (default: all in the reference).")
    ] = None,
    reference: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Reference file (default: leaderboard/reference/tiny.json in the project).")] = None,
    address: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Ray cluster to join.")] = None,
    executor: Annotated[str, typer.Option(metavar="EXECUTOR", help=EXECUTOR_HELP)] = "ray",
    progress: Annotated[bool, typer.Option(help="Live table of all trials.")] = True,
    tuned_from: Annotated[Path | None, typer.Option(
        metavar="PATH", help="With --update: results folder whose re-run sweeps give each baseline's tuned "
                             "configuration (default: leaderboard/results, what the board ranks).")] = None,
) -> None:
    """Regression check: baselines on tiny (fixed token budget and seeds, each with its tuned configuration) against
    leaderboard/reference/."""
    import os

    from bench.harness.clock import CPU_TRIAL_ENV

    os.environ.update(CPU_TRIAL_ENV)  # the bare loop runs here: same OpenMP settings as the trials, before torch loads
    from bench.check import REFERENCE_PATH, CheckReference, run_check

    reference_path = reference or project_root() / REFERENCE_PATH
    if tuned_from is not None and not update:
        raise BenchError("--tuned-from: only with --update; a check trains the configurations its reference stores")
    if submission:
        chosen = [find_submission(name) for name in submission]
    elif reference_path.exists() and not update:
        reference_names = CheckReference.model_validate_json(reference_path.read_text()).submissions
        chosen = [find_submission(name) for name in reference_names]
    else:
        chosen = _submissions(["all"], "tiny")
    findings = run_check(chosen, reference_path, update=update, address=address, progress=progress,
                         tuned_from=tuned_from or project_root() / PUBLISHED_RESULTS_DIR, executor=executor)
    table = Table(title=Text(f"bench check against {reference_path}"), title_justify="left")
    for column in ("check", "reference", "measured", "", "detail"):
        table.add_column(column)
    for finding in findings:
        verdict = "[green]ok[/]" if finding.ok else "[bold red]REGRESSED[/]"
        table.add_row(Text(finding.subject), Text(finding.reference), Text(finding.measured), verdict,
                      Text(finding.detail))
    print_table(console, table)
    failed = [f for f in findings if not f.ok]
    if failed:
        details = "; ".join(f"{f.subject}: {f.detail}" for f in failed)
        errors.print(f"[bold red]{len(failed)} check(s) failed:[/] {escape(details)}",
                     highlight=False, soft_wrap=True)
        raise typer.Exit(1)


study_app = BenchTyper(help="Studies: grids of trials that answer a research question, with scaling-law fits.",
                        no_args_is_help=True, **HELP_SETTINGS)
app.add_typer(study_app, name="study")


@study_app.command("run")
@user_errors
def study_run(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Study YAML, e.g. studies/tiny-scaling.yaml.")],
    results_dir: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Base results folder, the study writing to studies/NAME/ in it (default: results/ "
                             "in the project).")] = None,
    address: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Ray cluster to join.")] = None,
    executor: Annotated[str, typer.Option(metavar="EXECUTOR", help=EXECUTOR_HELP)] = "ray",
    progress: Annotated[bool, typer.Option(help="Live table of all trials.")] = True,
    track: Annotated[str | None, typer.Option(metavar="TRACKERS", help=TRACK_HELP)] = None,
) -> None:
    """Run a study's grid of trials (trials with an ok result are not re-run), then write its report. Its seeds are
    the study file's count: a study pairs its cells by seed."""
    from bench.study.run import run_study
    from bench.study.report import report_study

    results_dir = write_dir(results_dir)
    project_line(console, results_dir)
    with tracking(track):
        results = run_study(file, results_dir, address, progress=progress, executor=executor)
    print_table(console, results_table(results, f"study {file.stem}"))
    console.print(f"report: {report_study(file, results_dir)}", highlight=False, markup=False, soft_wrap=True)


@study_app.command("report")
@user_errors
def study_report(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Study YAML.")],
    results_dir: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Base results folder (default: results/ in the project).")] = None,
) -> None:
    """Write the study's Markdown report (tables, scaling fit with CIs, comparisons, plots) from its results."""
    from bench.study.report import report_study

    results_dir = write_dir(results_dir)
    console.print(f"report: {report_study(file, results_dir)}", highlight=False, markup=False, soft_wrap=True)


@app.command("results")
@user_errors
def results_command(
    workload: Annotated[str | None, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Only this workload's results.")] = None,
    submission: Annotated[list[str] | None, typer.Option(
        "--submission", "-s", metavar="SUBMISSION", help="Only these submissions' results (repeatable).")] = None,
    results_dir: Annotated[list[Path] | None, typer.Option(metavar="PATH", help=READ_DIRS_HELP)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON array of the result files instead.")] = False,
) -> None:
    """List stored results, oldest first: one table per workload, or JSON for scripts."""
    dirs = read_dirs(results_dir)
    stored = read_results(dirs)
    name = workload_name(workload) if workload else None
    if name is not None:
        known_name("workload", name, [p.stem for p in workload_files()] + [r.workload for r in stored])
    for each in submission or []:
        known_name("submission", each, [p.name for p in submission_dirs()] + [r.submission for r in stored])
    results = [
        r for r in stored if (name is None or r.workload == name) and (not submission or r.submission in submission)
    ]  # fmt: skip
    if json_:
        typer.echo(results_json(results))
        return
    if not results:
        wanted = " ".join([*(["--workload", name] if name else []), *(f"--submission {s}" for s in submission or [])])
        errors.print(f"no results{' for ' + wanted if wanted else ''} under {', '.join(map(shown, dirs))}; name "
                     "other folders with --results-dir (repeatable)", highlight=False, markup=False, soft_wrap=True)
        return
    for listed in dict.fromkeys(r.workload for r in results):
        rows = [r for r in results if r.workload == listed]
        print_table(console, results_table(rows, f"{listed}: {len(rows)} results", run_ids=True))


@app.command("export")
@user_errors
def export_command(
    result: Annotated[Path, typer.Argument(metavar="RESULT", help="Result file of a run made with --save-model.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="PATH", help="Folder to create (must be new or empty).")],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", metavar="FORMAT", help="Output format: hf (Hugging Face transformers).")] = "hf",
    workload: Annotated[str | None, typer.Option(
        "--workload", "-w", metavar="WORKLOAD", help="Workload for the tokenizer (default: the run's own).")] = None,
) -> None:
    """Export a saved model with its tokenizer (hf: loadable with AutoModelForCausalLM and `lm_eval --model hf`)."""
    from bench.export import export_result

    record = export_result(result, out, fmt, workload)
    console.print(
        f"exported run {record['run_id']} to {out} (logits checked against the saved model: max difference "
        f"{record['max_logit_difference']:.2g})", highlight=False, soft_wrap=True,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app(prog_name="bench"))

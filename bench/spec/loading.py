"""Loading spec files from YAML, with one readable message per problem (file, field path, given, allowed)."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bench.errors import BenchError, SpecError
from bench.spec.hparams import apply_overrides, path_problem
from bench.spec.submission import SubmissionManifest
from bench.spec.workload import WorkloadSpec

M = TypeVar("M", bound=BaseModel)

DEFAULT_WORKLOAD = "tiny"


ROOT_ENV = "BENCH_ROOT"


def project_root(start: Path | None = None) -> Path:
    """The project a command works on: ``$BENCH_ROOT`` when set, else the nearest folder from ``start`` (default:
    the current folder) upward that holds both ``workloads/`` and ``submissions/``, else the git root above it,
    else ``start`` itself.

    It follows where the user stands, never where the package is installed: a second clone, or a project of one's
    own beside an installed pretrain-bench, reads and writes its own workloads, submissions and results."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "workloads").is_dir() and (folder / "submissions").is_dir():
            return folder
    for folder in (here, *here.parents):
        if (folder / ".git").exists():  # a folder, or a file in a worktree or submodule
            return folder
    return here


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _members(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation may hold (through Optional, Annotated, list and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if getattr(annotation, "__metadata__", None) is not None:  # Annotated[X, ...]
        return _members(annotation.__origin__)
    return [m for arg in getattr(annotation, "__args__", ()) for m in _members(arg)]


def _tag(model: type[BaseModel]) -> Any:
    """The literal value of a union member's discriminator field (``kind`` / ``distribution``), if any."""
    for name in ("kind", "distribution"):
        field = model.model_fields.get(name)
        if field is not None and len(getattr(field.annotation, "__args__", ())) == 1:
            return field.annotation.__args__[0]
    return None


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at ``loc`` (the parent of an unknown field), for the 'unknown field' message.

    Pydantic's locations step through field names, list indices, and the tag of a discriminated union
    (``data.source.synthetic``); each step narrows the set of candidate model classes.
    """
    candidates = [model]
    for item in loc:
        if isinstance(item, int):
            continue
        by_tag = [c for c in candidates if _tag(c) == item]
        if by_tag:
            candidates = by_tag
            continue
        candidates = [m for c in candidates if item in c.model_fields for m in _members(c.model_fields[item].annotation)]
    return list(candidates[0].model_fields) if len(candidates) == 1 else []


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """Turn Pydantic's errors into lines like ``budget.wall_clock: expected a duration ..., got '45x'``."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_fields(model, loc[:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            problems.append(f"{_field_path(loc)}: unknown field{hint}")
            continue
        if kind == "missing":
            problems.append(f"{_field_path(loc)}: required field is missing")
            continue
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None or repr(given) in message else f" (given: {given!r})"
        problems.append(f"{_field_path(loc)}: {message}{shown}")
    return problems


MAX_YAML_NODES = 100_000
"""Most values a spec file may hold once its aliases are expanded. The largest file of the project holds about 100;
an alias names a value without copying it, so a few lines of aliases of aliases ("billion laughs") stand for 10^9
strings, which validate but then exhaust memory wherever the data is walked (a dump, a hash, a copy)."""

MAX_YAML_DEPTH = 64
"""Deepest nesting of lists and mappings a spec file may have (the project's deepest: 6). PyYAML composes nested
values recursively, so 20,000 ``[`` end in a RecursionError instead of a message."""


class _SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what no spec needs and a hostile file could use:

    * a key given twice in one mapping. Plain PyYAML keeps the last value, so ``wall_clock: 60s`` followed later by
      ``wall_clock: 10h`` would silently run a benchmark with a budget nobody reading the top of the file expects.
      Keys brought in by a ``<<`` merge may still be overridden: that is what merges are for.
    * more than :data:`MAX_YAML_NODES` values counting each alias as the values it stands for, nesting deeper than
      :data:`MAX_YAML_DEPTH`, and an alias inside the value it names (a recursive structure). Each is counted as
      the file is composed, before anything is built, and reported at the alias or value that crossed the bound.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, for the nodes composed so far

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None:  # (an undefined alias: the base class reports it)
                size = self._sizes.get(id(node))
                if size is None:
                    raise yaml.composer.ComposerError(
                        None, None, f"alias *{event.anchor} refers to a value that contains it", event.start_mark
                    )
                self._count(size, event)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels; a spec needs a few", event.start_mark
            )
        before = self._nodes
        self._count(1, event)
        node = super().compose_node(parent, index)
        self._sizes[id(node)] = self._nodes - before
        self._depth -= 1
        return node

    def _count(self, values: int, event: yaml.Event) -> None:
        self._nodes += values
        if self._nodes > MAX_YAML_NODES:
            what = "aliases expand" if isinstance(event, yaml.AliasEvent) else "the file holds"
            raise yaml.composer.ComposerError(
                None, None, f"{what} to more than {MAX_YAML_NODES:,} values; a spec holds a few hundred",
                event.start_mark,
            )

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first_line[key] + 1}); a key may appear only once",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Read a YAML file with :func:`parse_yaml`; an unreadable file is a :class:`BenchError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML, turning syntax errors, duplicate keys and oversized or over-deep content (see
    :class:`_SpecLoader`) into a :class:`SpecError` naming ``source`` with the line and column. All YAML the tool
    reads from a user comes through here: workloads, manifests and studies (:func:`read_yaml`), ``--set`` values."""
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, [f"{where}invalid YAML: {problem}"]) from None


def load_model(path: Path, model: type[M]) -> M:
    """Validate the YAML at ``path`` into ``model``; every problem is reported, not just the first."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(str(path), [f"expected a mapping of fields at the top level, got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(str(path), format_validation_error(exc, model)) from None


def load_workload(path: Path) -> WorkloadSpec:
    spec = load_model(path, WorkloadSpec)
    if spec.name != path.stem:
        raise SpecError(str(path), [f"name: must equal the file name {path.stem!r}, got {spec.name!r}"])
    return spec


MANIFEST = "submission.yaml"
_MERGED_BY_KEY = ("hyperparameters", "search_space")
_IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints", "tuning.md"}
"""Left out of the source hash: caches, and ``tuning.md``, the record ``bench tune --record`` writes of a sweep
(a record of results, not code: writing it must not turn the sweep's configuration into another one)."""


@dataclass(frozen=True)
class Submission:
    """A submission as the harness uses it: its folder, its complete manifest, and where its code lives.

    Built once by :func:`load_submission` and passed on, so a run reads each manifest once.
    """

    folder: Path
    manifest: SubmissionManifest
    lineage: tuple[Path, ...] = ()  # this folder, then the folders it extends, nearest first
    recipe_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def as_message(self, recipe_dir: Path | None = None) -> dict[str, Any]:
        """The submission as JSON values, for a box (which rebuilds it with :meth:`from_message`, reading no file);
        ``recipe_dir`` replaces where its recipe file is (a copy Ray shipped to a worker)."""
        folder = recipe_dir or self.recipe_dir
        return {"folder": str(self.folder), "manifest": self.manifest.model_dump(mode="json"),
                "lineage": [str(p) for p in self.lineage], "recipe_dir": str(folder) if folder else None}

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Submission:
        return cls(folder=Path(message["folder"]), manifest=SubmissionManifest.model_validate(message["manifest"]),
                   lineage=tuple(map(Path, message["lineage"])),
                   recipe_dir=Path(message["recipe_dir"]) if message["recipe_dir"] else None)

    def hyperparameters(
        self, overrides: Mapping[str, Any], workload: str | None = None, where: str | None = None
    ) -> dict[str, Any]:
        """What a trial on ``workload`` runs with: the hyperparameters declared for it (the common ones with the
        workload's own on top) and ``overrides`` applied. Only the overrides' dotted names are checked here (each
        must address a value, e.g. ``optimizer_options.betas.1``); names and types are the recipe's configuration's
        to check (:func:`bench.train.configure.configure`). Problems name ``where`` (default: this manifest)."""
        declared = self.manifest.declared(workload)
        problems = [problem for name in sorted(overrides) if "." in name
                    if (problem := path_problem(declared, name)) is not None]
        if problems:
            raise BenchError("\n".join(f"{where or self.manifest_path}: {problem}" for problem in problems))
        return apply_overrides(declared, overrides)

    def enters(self, workload: str) -> bool:
        """Whether the manifest declares ``workload`` (a submission is sized and tuned for the workloads it enters)."""
        return workload in self.manifest.workloads

    def source_hash(self) -> str:
        """SHA-256 over the complete manifest, the files of every folder in the lineage (relative paths and
        contents; a link's target and the content it reaches: :func:`load_submission` refused links leading out)
        and the harness's training code (:func:`trainer_hash`), so a result names the exact code and choices that
        produced it, inherited ones and the shared loop included: a changed loop makes new entries, as a changed
        submission does."""
        digest = hashlib.sha256(self.manifest.model_dump_json().encode() + b"\0")
        for folder in self.lineage:
            root = folder.resolve()
            for path in sorted(folder.rglob("*")):
                if _IGNORED_PARTS & set(path.parts) or path.suffix == ".pyc":
                    continue
                name = f"{folder.name}/{path.relative_to(folder)}"
                if path.is_symlink():  # where it points: retargeting a link inside the folder changes the code
                    target = path.resolve()
                    where = target.relative_to(root) if target.is_relative_to(root) else target
                    digest.update(f"{name} -> {where}".encode() + b"\0")
                if path.is_file():
                    digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        digest.update(trainer_hash().encode())
        return digest.hexdigest()


TRAINER_CODE = ("train", "data/stream.py", "harness/context.py", "harness/clock.py")
"""The harness's code a recipe runs on, relative to the ``bench`` package: everything a recipe imports to train
(``bench/train/``: the GPT, the loop, optimizers, schedules, evaluation) and what feeds and times it (the batch
stream, the context, the training clock). Every baseline is a list of choices over it, so it is part of the code a
result ran, as much as the submission's own folder."""


def trainer_hash(package: Path | None = None) -> str:
    """SHA-256 over :data:`TRAINER_CODE`'s Python files (relative paths and contents) of ``package`` (default:
    this ``bench`` package, read once per process)."""
    return _hash_trainer(package) if package is not None else _this_trainer()


@functools.cache
def _this_trainer() -> str:
    return _hash_trainer(Path(__file__).resolve().parents[1])


def _hash_trainer(package: Path) -> str:
    digest = hashlib.sha256()
    for part in TRAINER_CODE:
        base = package / part
        for path in sorted(base.rglob("*.py")) if base.is_dir() else [base]:
            digest.update(f"{path.relative_to(package)}".encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """The child's fields replace the parent's; ``hyperparameters`` and ``search_space`` merge key by key, and a
    key set to null there removes the parent's entry (e.g. a search dimension that makes no sense for the child).
    ``workloads`` merges workload by workload and, inside one, key by key: a child that changes only positions
    inherits the parent's shapes for every workload; a workload set to null is not entered."""
    merged = {**parent, **{k: v for k, v in child.items() if k not in (*_MERGED_BY_KEY, "workloads")}}
    for key in _MERGED_BY_KEY:
        merged[key] = _merge_entries(parent.get(key), child.get(key))
    mine, theirs = _workload_entries(child.get("workloads")), _workload_entries(parent.get("workloads"))
    workloads = {name: own for name, own in theirs.items() if name not in mine}
    for name, own in mine.items():
        if own is None:
            continue
        base = theirs.get(name) or {}
        if not isinstance(own, dict) or not isinstance(base, dict):
            workloads[name] = own  # not a mapping: validation reports it
            continue
        entry = {**base, **{k: v for k, v in own.items() if k not in _MERGED_BY_KEY}}
        entry["hyperparameters"] = _merge_entries(base.get("hyperparameters"), own.get("hyperparameters"))
        entry["search_space"] = {**(base.get("search_space") or {}), **(own.get("search_space") or {})}
        workloads[name] = entry
    merged["workloads"] = workloads
    return merged


def _merge_entries(parent: Any, child: Any) -> dict[str, Any]:
    entries = {**(parent or {}), **(child or {})}
    return {k: v for k, v in entries.items() if v is not None}


def _workload_entries(value: Any) -> dict[str, Any]:
    """A manifest's ``workloads`` as written (a list of names or a mapping), as a mapping; left for validation to
    reject when it is neither."""
    if isinstance(value, list):
        return {name: {} for name in value if isinstance(name, str)}
    return dict(value) if isinstance(value, dict) else {}


def _raw_manifest(folder: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], tuple[Path, ...], Path | None]:
    """The merged manifest mapping of ``folder``, its lineage and the folder its recipe file lives in."""
    path = folder / MANIFEST
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(str(path), [f"expected a mapping of fields at the top level, got {type(data).__name__}"])
    lineage = (*seen, folder)
    own_entry = folder if str(data.get("entry_point", "")).partition(":")[0].endswith(".py") else None
    parent_name = data.get("extends")
    if parent_name is None:
        return data, lineage, own_entry
    if not isinstance(parent_name, str) or not parent_name or "/" in parent_name or parent_name.startswith("."):
        raise SpecError(str(path), [f"extends: expected the name of a sibling submission, got {parent_name!r}"])
    parent = folder.parent / parent_name
    if parent in lineage:
        chain = " -> ".join(p.name for p in (*lineage, parent))
        raise SpecError(str(path), [f"extends: submissions extend each other in a cycle ({chain})"])
    if not (parent / MANIFEST).is_file():
        known = ", ".join(p.parent.name for p in sorted(folder.parent.glob(f"*/{MANIFEST}"))) or "none"
        raise SpecError(str(path), [f"extends: no submission {parent_name!r} beside this one (known: {known})"])
    base, chain, base_entry = _raw_manifest(parent, lineage)
    if "entry_point" in data:
        base_entry = own_entry
    return _merge(base, data), chain, base_entry


def load_submission(folder: Path) -> Submission:
    """Read ``folder/submission.yaml``, applying ``extends`` (recursively), and validate the complete manifest.

    Problems name this manifest's file; a broken parent is reported with its own file, and so is a folder of the
    lineage holding a link that leads out of it (:func:`links_out_of`).
    """
    folder = folder.resolve()
    path = folder / MANIFEST
    data, lineage, recipe_dir = _raw_manifest(folder, ())
    try:
        manifest = SubmissionManifest.model_validate(data)
    except ValidationError as exc:
        raise SpecError(str(path), format_validation_error(exc, SubmissionManifest)) from None
    if manifest.name != folder.name:
        raise SpecError(str(path), [f"name: must equal the folder name {folder.name!r}, got {manifest.name!r}"])
    for member in lineage:
        if problems := links_out_of(member):
            raise SpecError(str(member / MANIFEST), problems)
    if recipe_dir is not None:
        recipe_path(recipe_dir, manifest)
    return Submission(folder=folder, manifest=manifest, lineage=lineage, recipe_dir=recipe_dir)


def links_out_of(folder: Path) -> list[str]:
    """One problem per symbolic link under ``folder`` that resolves outside it (followed to its end; a broken link
    counts by where it points).

    The source hash covers the lineage's folders only: code reached through a link to another folder would run
    without the result identifying it, and could change after the result was made. Links that stay inside the
    folder are fine; the hash covers where each points and the content it reaches.
    """
    root = folder.resolve()
    problems = []
    for parent, dirs, files in os.walk(folder):  # never follows a link to a folder, so a link loop ends too
        for name in sorted([*dirs, *files]):
            path = Path(parent) / name
            if path.is_symlink() and not (target := path.resolve()).is_relative_to(root):
                problems.append(
                    f"{path.relative_to(folder)}: a link to {target}, outside the submission folder {root}; copy "
                    "what it links to into the folder (the source hash covers only the folder's own files)"
                )
    return problems


def find_submission(name_or_path: str, root: Path | None = None) -> Submission:
    """The submission named ``name_or_path`` (a folder under ``submissions/``, or a folder path), loaded."""
    return load_submission(submission_dir(name_or_path, root))


def recipe_path(recipe_dir: Path, manifest: SubmissionManifest) -> Path:
    """The resolved file of a file entry point, which must lie inside ``recipe_dir`` (symlinks followed).

    The source hash covers the lineage's folders only, so code imported from elsewhere (a symlink pointing out of
    the folder; absolute and ``..`` paths are already refused by the manifest's validation) would run without
    being identified by the result. The file need not exist yet: importing it reports a missing file.
    """
    assert manifest.recipe_file is not None
    root = recipe_dir.resolve()
    path = (root / manifest.recipe_file).resolve()
    if not path.is_relative_to(root):
        raise SpecError(
            str(recipe_dir / MANIFEST),
            [f"entry_point: {manifest.recipe_file!r} resolves to {path}, outside the submission folder {root}"],
        )
    return path


def workload_path(name_or_path: str, root: Path | None = None) -> Path:
    """``tiny`` -> ``<root>/workloads/tiny.yaml``; a path to a YAML file is taken as it is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    root = root or project_root()
    path = root / "workloads" / f"{name_or_path}.yaml"
    if not path.exists():
        raise BenchError(unknown_name("workload", name_or_path, [p.stem for p in workload_files(root)], root))
    return path


def submission_dir(name_or_path: str, root: Path | None = None) -> Path:
    """``adamw-baseline`` -> ``<root>/submissions/adamw-baseline``; a folder path is taken as it is."""
    candidate = Path(name_or_path)
    if (candidate / "submission.yaml").exists():
        return candidate
    root = root or project_root()
    folder = root / "submissions" / name_or_path
    if not (folder / "submission.yaml").exists():
        raise BenchError(unknown_name("submission", name_or_path, [p.name for p in submission_dirs(root)], root))
    return folder


def unknown_name(kind: str, name: str, known: Iterable[str], root: Path) -> str:
    """The message for a workload or submission name the project does not have: the known names, and where the
    project is (and how to pick another) when it has none."""
    names = sorted(set(known))
    if names:
        return f"unknown {kind} {name!r} (known: {', '.join(names)})"
    return (f"unknown {kind} {name!r}: the project at {root} has no {kind}s (it is the folder you stand in, or the "
            f"nearest one above it with workloads/ and submissions/; ${ROOT_ENV} picks another)")


def workload_files(root: Path | None = None) -> list[Path]:
    return sorted(((root or project_root()) / "workloads").glob("*.yaml"))


def submission_dirs(root: Path | None = None) -> list[Path]:
    return sorted(p.parent for p in ((root or project_root()) / "submissions").glob("*/submission.yaml"))

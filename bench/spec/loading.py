"""Loading spec files from YAML, with one readable message per problem (file, field path, given, allowed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bench.errors import BenchError, SpecError
from bench.spec.submission import SubmissionManifest
from bench.spec.workload import WorkloadSpec

M = TypeVar("M", bound=BaseModel)

DEFAULT_WORKLOAD = "tiny"


def project_root() -> Path:
    """The folder holding ``workloads/`` and ``submissions/``: ``$BENCH_ROOT``, else the checkout, else the cwd."""
    if env := os.environ.get("BENCH_ROOT"):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "workloads").is_dir():
        return checkout
    return Path.cwd()


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping.

    Plain PyYAML keeps the last value, so ``wall_clock: 60s`` followed later by ``wall_clock: 10h`` would silently
    run a benchmark with a budget nobody reading the top of the file expects. Keys brought in by a ``<<`` merge may
    still be overridden: that is what merges are for.
    """

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
    """Read a YAML file, turning syntax errors and duplicate keys into a :class:`SpecError` with the line and
    column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(str(path), [f"{where}invalid YAML: {problem}"]) from None


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


def load_submission(folder: Path) -> SubmissionManifest:
    manifest = load_model(folder / "submission.yaml", SubmissionManifest)
    if manifest.name != folder.name:
        raise SpecError(
            str(folder / "submission.yaml"), [f"name: must equal the folder name {folder.name!r}, got {manifest.name!r}"]
        )
    entry_point_path(folder, manifest)
    return manifest


def entry_point_path(folder: Path, manifest: SubmissionManifest) -> Path:
    """The resolved file of ``manifest.entry_point``, which must lie inside ``folder`` (symlinks followed).

    ``submission_hash`` covers the folder's files only, so code imported from elsewhere (``/tmp/x.py``,
    ``../other/recipe.py``, or a symlink pointing out of the folder) would run without being identified by the
    result. The file need not exist yet: importing it reports a missing file.
    """
    file_name = manifest.entry_point.partition(":")[0]
    where = str(folder / "submission.yaml")
    if Path(file_name).is_absolute():
        raise SpecError(
            where, [f"entry_point: must be a path inside the submission folder, got absolute {file_name!r}"]
        )
    root = folder.resolve()
    path = (folder / file_name).resolve()
    if not path.is_relative_to(root):
        raise SpecError(
            where, [f"entry_point: {file_name!r} resolves to {path}, outside the submission folder {root}"]
        )
    return path


def workload_path(name_or_path: str, root: Path | None = None) -> Path:
    """``tiny`` -> ``<root>/workloads/tiny.yaml``; a path to a YAML file is taken as it is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    path = (root or project_root()) / "workloads" / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in workload_files(root)) or "none"
        raise BenchError(f"unknown workload {name_or_path!r} (known: {known})")
    return path


def submission_dir(name_or_path: str, root: Path | None = None) -> Path:
    """``adamw-baseline`` -> ``<root>/submissions/adamw-baseline``; a folder path is taken as it is."""
    candidate = Path(name_or_path)
    if (candidate / "submission.yaml").exists():
        return candidate
    folder = (root or project_root()) / "submissions" / name_or_path
    if not (folder / "submission.yaml").exists():
        known = ", ".join(p.name for p in submission_dirs(root)) or "none"
        raise BenchError(f"unknown submission {name_or_path!r} (known: {known})")
    return folder


def workload_files(root: Path | None = None) -> list[Path]:
    return sorted(((root or project_root()) / "workloads").glob("*.yaml"))


def submission_dirs(root: Path | None = None) -> list[Path]:
    return sorted(p.parent for p in ((root or project_root()) / "submissions").glob("*/submission.yaml"))

"""Importing a submission's recipe class from its folder, and hashing the folder's source.

Each submission is imported under a private module name derived from its folder, so two submissions may both
have a ``recipe.py`` without clashing, and nothing is added to ``sys.path`` for good.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path

from bench.errors import BenchError
from bench.spec.submission import SubmissionManifest
from bench.train.api import Recipe

_IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def load_recipe_class(folder: Path, manifest: SubmissionManifest) -> type[Recipe]:
    """Import ``manifest.entry_point`` from ``folder``; errors name the file and what is wrong."""
    file_name, _, class_name = manifest.entry_point.partition(":")
    path = (folder / file_name).resolve()
    where = f"{folder / 'submission.yaml'}: entry_point"
    if not path.is_file():
        raise BenchError(f"{where}: {file_name} does not exist in {folder}")
    module_name = f"bench_submission_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # lets a recipe import helper modules next to it
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        raise BenchError(f"{where}: importing {file_name} failed: {tail}") from None
    finally:
        sys.path.remove(str(path.parent))
    recipe_class = getattr(module, class_name, None)
    if recipe_class is None:
        raise BenchError(f"{where}: {file_name} defines no {class_name!r}")
    if not (isinstance(recipe_class, type) and issubclass(recipe_class, Recipe)):
        raise BenchError(f"{where}: {class_name} is not a subclass of bench.train.api.Recipe")
    missing = sorted(recipe_class.__abstractmethods__)
    if missing:
        raise BenchError(f"{where}: {class_name} does not implement {', '.join(missing)}")
    return recipe_class


def submission_hash(folder: Path) -> str:
    """SHA-256 over the submission's files (relative paths and contents), so a result names the exact code."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _IGNORED_PARTS & set(p.parts)):
        if path.suffix == ".pyc":
            continue
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()

"""Importing a submission's recipe class: a file of its folder, or a recipe of the harness's own package.

A file is imported under a private module name derived from its path, so two submissions may both have a
``recipe.py`` without clashing, and nothing is added to ``sys.path`` for good.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import tempfile
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from bench.errors import BenchError
from bench.spec.loading import Submission, recipe_path
from bench.train.api import Recipe


def _import_file(path: Path, file_name: str, where: str, beside: tuple[Path, ...] = ()) -> ModuleType:
    """Import ``path`` under a private name; while it imports, its folder and the folders of ``beside`` (the
    submissions it extends) are on ``sys.path``, so it may import helper modules of its own lineage. Its bytecode
    (and its helpers') is compiled from the source into an empty folder of its own (``sys.pycache_prefix``), never
    read from a ``__pycache__`` the submission ships: the source hash covers the source, so the source is what
    runs."""
    if not path.is_file():
        raise BenchError(f"{where}: {file_name} does not exist in {path.parent}")
    module_name = f"bench_submission_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    folders = [str(folder) for folder in dict.fromkeys([path.parent, *beside])]
    sys.path[:0] = folders
    prefix, sys.pycache_prefix = sys.pycache_prefix, tempfile.mkdtemp(prefix="bench-bytecode-")
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        raise BenchError(f"{where}: importing {file_name} failed: {tail}") from None
    finally:
        shutil.rmtree(sys.pycache_prefix, ignore_errors=True)
        sys.pycache_prefix = prefix
        for folder in folders:
            sys.path.remove(folder)
    return module


def load_recipe_class(submission: Submission, recipe_dir: Path | None = None) -> type[Recipe]:
    """Import the submission's entry point; errors name the manifest and what is wrong.

    ``recipe_dir`` replaces ``submission.recipe_dir`` where the folder was shipped elsewhere (a Ray worker).
    """
    manifest = submission.manifest
    module_name, _, class_name = manifest.entry_point.partition(":")
    where = f"{submission.manifest_path}: entry_point"
    if manifest.recipe_file is not None:
        folder = recipe_dir or submission.recipe_dir
        assert folder is not None, "a file entry point always has the folder of the manifest that named it"
        module = _import_file(recipe_path(folder, manifest), manifest.recipe_file, where, submission.lineage)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BenchError(f"{where}: cannot import {module_name}: {exc}") from None
    recipe_class = getattr(module, class_name, None)
    if recipe_class is None:
        raise BenchError(f"{where}: {module_name} defines no {class_name!r}")
    if not (isinstance(recipe_class, type) and issubclass(recipe_class, Recipe)):
        raise BenchError(f"{where}: {class_name} is not a subclass of bench.train.api.Recipe")
    missing = sorted(recipe_class.__abstractmethods__)
    if missing:
        raise BenchError(f"{where}: {class_name} does not implement {', '.join(missing)}")
    return recipe_class

"""Make ``lm_eval --model bench`` work from lm-eval's own command line.

lm-eval finds models only in its registry, which it fills by importing ``lm_eval.models`` (a fixed table of its own
models) the first time a model is looked up; it reads no entry points and imports nothing a user names. So the model
is registered when ``lm_eval.models`` is imported: :func:`install` puts an import hook on ``sys.meta_path`` that,
right after that module runs, registers ``bench`` as a lazy placeholder (``module:Class``), which lm-eval imports only
when the ``bench`` model is actually asked for. Installing the hook imports nothing heavy (no torch, no lm-eval, not
even the ``bench`` package: this is a top-level module of the standard library's imports only, about a
millisecond), so it is cheap enough to run at interpreter start: the package ships ``pretrain_bench_lm_eval.pth``,
which Python's ``site`` runs from site-packages on every start (see ``setup.py``), and which calls :func:`install`.

In Python code none of this is needed: ``import bench.downstream.lm_eval_model`` registers the model directly.
"""

from __future__ import annotations

import importlib.machinery
import sys

TRIGGER = "lm_eval.models"
MODEL = ("bench", "bench.downstream.lm_eval_model:BenchResultLM")


def register() -> None:
    """Register ``bench`` in lm-eval's model registry as a placeholder (imported when first used)."""
    from lm_eval.api.registry import model_registry

    name, target = MODEL
    if name not in model_registry:
        model_registry.register(name, target=target)


class _RegisteringLoader:  # duck-typed: importlib.abc alone costs ~10 ms of imports at every start
    """Runs the real loader of ``lm_eval.models``, then :func:`register`."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> object | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: object) -> None:
        self.inner.exec_module(module)
        register()

    def __getattr__(self, name: str) -> object:  # resource readers, is_package, ...: as the real loader
        return getattr(self.inner, name)


class _Hook:  # a meta path finder
    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != TRIGGER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    """Arrange for ``bench`` to be registered whenever lm-eval loads its models (idempotent)."""
    if TRIGGER in sys.modules:
        register()
    elif not any(isinstance(finder, _Hook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Hook())

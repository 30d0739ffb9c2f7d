"""pretrain-bench: fixed-budget benchmarks for small-scale language-model pretraining."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pretrain-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

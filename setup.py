"""Only here to ship ``pretrain_bench_lm_eval.pth`` into site-packages (pyproject.toml has everything else).

The .pth makes ``lm_eval --model bench`` work from lm-eval's own command line; why it is needed and what it does:
``pretrain_bench_lm_eval.py``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "pretrain_bench_lm_eval.pth"


class BuildPyWithPth(build_py):
    """Copies the .pth file to the root of the built wheel, which installs into site-packages."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(Path(__file__).parent / PTH), str(Path(self.build_lib) / PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


class EditableWheelWithPth(editable_wheel):
    """The same for ``pip install -e``: files put in the unpacked wheel's root land in site-packages.

    (An editable wheel does not take build_py's outputs; ``_run_build_commands`` is setuptools' step that fills the
    unpacked wheel, extended here by one file.)
    """

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):  # noqa: ANN001, ANN202
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        self.copy_file(str(Path(__file__).parent / PTH), str(Path(unpacked_wheel) / PTH), preserve_mode=0)
        return result


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})

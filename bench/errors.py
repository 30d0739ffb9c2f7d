"""User-facing errors. The CLI prints these as readable messages and exits non-zero, without a traceback.

Anything else that escapes is a bug in pretrain-bench and is shown with its traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix: bad input, a missing file or dataset, a full disk."""


class SpecError(BenchError):
    """A spec file failed to load. Holds one message per problem, each naming the file and the field."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))

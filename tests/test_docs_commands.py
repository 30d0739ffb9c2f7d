"""The docs agree with the commands: every ``bench ...`` command README.md and CONTRIBUTING.md show, in a code block
or inline, parses with ``--help`` appended, so an option that was renamed or removed breaks this test (issue 31:
CONTRIBUTING named ``--tokens``, which ``bench run`` lacks). Option *values* are not checked (``--help`` is handled
before them): placeholders such as ``RUN_ID`` stay as written."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.testing import CliRunner

from bench.cli import app

from conftest import ROOT

DOCS = ("README.md", "CONTRIBUTING.md")
STARTS = {"do", "then", "else", "&&", "||", "|", ";"}  # shell words after which a command starts
ENDS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "<", "&", "done"}  # shell words that end a command


def _blocks(text: str) -> list[str]:
    """The lines of the fenced code blocks, continuation lines joined."""
    lines = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def _inline(text: str) -> list[str]:
    """Inline code spans that are a ``bench`` command (``bench run --seeds 3``), even when a line break splits one."""
    return [" ".join(span.split()) for span in re.findall(r"`(bench [^`]+)`", text)]


def bench_commands(text: str) -> list[list[str]]:
    """Each ``bench`` command in ``text``'s code blocks and inline code, as its arguments after ``bench``."""
    found = []
    for line in [*_blocks(text), *_inline(text)]:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote in prose
            continue
        for index, word in enumerate(words):
            before = words[index - 1] if index else ";"
            starts = before in STARTS or before.endswith(";") or re.fullmatch(r"[A-Z_]+=\S*", before)
            if word != "bench" or not starts:
                continue
            if index and re.fullmatch(r"[A-Z_]+=\S*", before) and not all(
                    re.fullmatch(r"[A-Z_]+=\S*", w) for w in words[:index]):
                continue  # VAR=value before a command that is not bench
            args = []
            for arg in words[index + 1:]:
                if arg in ENDS or arg.startswith((">", "2>")):
                    break
                args.append(arg.removesuffix(";"))
                if arg.endswith(";"):
                    break
            found.append(args)
    return found


COMMANDS = sorted({(doc, tuple(args)) for doc in DOCS for args in bench_commands((ROOT / doc).read_text())})


def test_the_docs_show_the_commands_this_test_checks():
    shown = {" ".join(args) for _, args in COMMANDS}
    assert "compare adamw-baseline rotary --workload tiny" in shown  # README, code block
    assert "tune --workload tiny --submission $s --trials 8 --seed 0 --no-progress --results-dir $R --record" in shown
    assert any(c.startswith("run --workload 40m-10gb --submission all --address HEAD_IP:6379") for c in shown)
    assert "run --seeds 3" in shown  # README, inline
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("doc", "args"), COMMANDS, ids=[f"{doc}: bench {' '.join(args)}" for doc, args in COMMANDS])
def test_every_documented_command_parses(doc, args):
    done = CliRunner().invoke(app, [*args, "--help"])
    assert done.exit_code == 0, f"{doc}: bench {' '.join(args)}\n{done.output}"
    assert "Usage: bench" in done.output

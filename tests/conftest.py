"""Test-wide settings: never touch the network, and keep caches and results inside pytest's temp dirs."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _bench_cache(tmp_path_factory: pytest.TempPathFactory):
    """One data cache per test session, never the user's own: a prepared corpus is reused across tests, and across
    pytest-xdist's workers (each has a temp dir of its own under the session's; data builds take a lock). Set for
    the whole session, so module fixtures, the Ray workers they start and the commands they run see it too."""
    session = tmp_path_factory.getbasetemp()
    cache = (session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session) / "bench-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(cache))
        yield


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads, and two threads on a shared 2-core machine can be 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


WORDS = [
    "the",
    "a",
    "model",
    "token",
    "learns",
    "data",
    "of",
    "in",
    "and",
    "small",
    "large",
    "budget",
    "time",
    "loss",
    "grows",
    "falls",
    "é",
    "日本",
]


def make_docs(n: int, seed: int = 0) -> list[str]:
    """Distinct documents ``doc 00042: words...`` of 20-200 bytes or more, with non-ASCII words among them."""
    rng = random.Random(seed)
    return [f"doc {i:05d}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for i in range(n)]


def vouched(results, root: Path = ROOT):
    """What stands behind ``results`` for a board test about something else: the test's maintainers vouch for every
    one of them as their own run (as ``bench vouch`` records it), so each is verified, whatever its source hash."""
    from datetime import date

    from bench.board.trust import Trust
    from bench.results.registry import Registry, vouching

    return Trust(root, vouching(Registry(), list(results), "the tests", "runs of the test fixtures", date(2026, 12, 7)))


PUBLISHED_2026_12_02 = ROOT / "tests" / "fixtures" / "published-2026-12-02"
"""The results published on 2026-12-02 (tiny on cpu-2, the old clock), with the registry that vouched for them, the
workload file and the studies' reports, laid out like a project: see its README.md. Tests that assert numbers,
run ids or hashes of the published board read this copy, not ``leaderboard/``, which is re-published."""


def published_project(root: Path, fixture: Path = PUBLISHED_2026_12_02) -> Path:
    """A project at ``root`` holding ``fixture``'s workloads/ and leaderboard/ (copied: a test may write records
    there) and this repository's submissions/ and FINDINGS.md (linked)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("workloads", "leaderboard"):
        shutil.copytree(fixture / name, root / name)
    for name in ("submissions", "FINDINGS.md"):
        (root / name).symlink_to(ROOT / name)
    return root

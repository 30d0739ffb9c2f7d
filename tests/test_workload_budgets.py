"""The GPU workloads' notes do their budget arithmetic right (FLOPs per token with the LM head, against the SKU's
datasheet bf16 peak) and their provisional targets follow the method the notes state (Chinchilla fit + 0.2 nats)."""

from __future__ import annotations

import re

import pytest

from bench.measure.flops import flops_per_token
from bench.spec.hardware_classes import gpu_sku
from bench.spec.loading import load_workload, workload_path
from bench.train.model import GPTConfig

from conftest import ROOT

# The model shape each workload's notes assume at its size limit (layers, width).
SHAPES = {
    "20m-10gb": (6, 512), "swahili-20m": (6, 512), "40m-10gb": (8, 640), "40m-100gb": (8, 640),
    "160m-10gb": (12, 1024), "160m-100gb": (12, 1024),
}
CHINCHILLA_TARGETS = ("20m-10gb", "40m-10gb", "160m-10gb", "40m-100gb", "160m-100gb")


def chinchilla(n: float, d: float) -> float:
    """Hoffmann et al. 2022, approach 3."""
    return 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28


def _number(text: str) -> float:
    value, unit = re.fullmatch(r"([0-9.]+)([MB])", text).groups()
    return float(value) * {"M": 1e6, "B": 1e9}[unit]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_notes_budget_arithmetic_counts_the_lm_head(name):
    spec = load_workload(workload_path(name, ROOT))
    layers, width = SHAPES[name]
    vocab = spec.tokenizer.vocab_size
    per_token = flops_per_token(GPTConfig(vocab_size=vocab, seq_len=spec.eval.seq_len, n_layer=layers,
                                          n_head=8, n_embd=width))
    peak = gpu_sku(spec.budget.accelerator).tflops["bf16"] * 1e12 * spec.budget.gpus
    notes = " ".join(spec.notes.split())
    found = re.search(r"buys ([0-9.]+)B tokens at 25% MFU \(([0-9.]+)M tokens/s\) and ([0-9.]+)B at 40% "
                      r"\(([0-9.]+)M tokens/s\)", notes)
    assert found, notes
    for mfu, tokens, rate in ((0.25, found[1], found[2]), (0.40, found[3], found[4])):  # quoted to 3 figures
        per_s = mfu * peak / per_token
        assert float(rate) == pytest.approx(per_s / 1e6, rel=0.005)
        assert float(tokens) == pytest.approx(per_s * spec.budget.wall_clock / 1e9, rel=0.005)
    assert "LM head" in notes and 6 * vocab * width / per_token > 0.15  # what the notes used to leave out


@pytest.mark.parametrize("name", CHINCHILLA_TARGETS)
def test_a_provisional_target_follows_its_stated_method(name):
    spec = load_workload(workload_path(name, ROOT))
    notes = " ".join(spec.notes.split())
    assert "provisional" in notes
    stated = re.search(r"\+ 0\.2 nats .*?at N = ([0-9.]+[MB]), D = ([0-9.]+[MB])", notes)
    assert stated, notes
    assert spec.target.value == round(chinchilla(_number(stated[1]), _number(stated[2])) + 0.2, 2)

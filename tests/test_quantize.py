"""Model size in bytes and int8 quantization: bytes are counted at the dtypes weights are stored in, a quantized model
computes with its int8 weights, and a byte-limited workload judges a float32 model invalid and an int8 one ok."""

from __future__ import annotations

import copy
import sys
import warnings

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from bench.harness.verdict import OK, param_counts, size_rule
from bench.spec.loading import find_submission, load_workload, workload_path
from bench.results.schema import TrialStatus
from bench.spec.workload import ModelLimit
from bench.train.saved_model import save_model
from bench.train.loader import load_recipe_class
from bench.train.model import GPT, GPTConfig
from bench.train.params import count_model_bytes, count_parameters
from bench.train.quantize import quantize_int8

from conftest import ROOT
from test_trial import small_tiny, trial

VOCAB, WINDOW = 257, 64


def _gpt(**shape) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 2, "n_head": 2, "n_embd": 32, **shape})).eval()


def _expected_int8_bytes(model: GPT) -> dict[str, int]:
    """Per torchao's int8 weight-only layout: int8 values and an int8 zero point per row, a float32 scale per row;
    norms stay float32; the tied embedding/head once."""
    weights = {id(m.weight): m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))}
    rows = sum(w.shape[0] for w in weights.values())
    norms = sum(p.numel() for n, p in model.named_parameters() if "ln" in n)
    return {"int8": sum(w.numel() for w in weights.values()) + rows, "float32": 4 * (rows + norms)}


def test_float_model_bytes_are_four_per_parameter_with_the_tied_head_once():
    model = _gpt()
    size = count_model_bytes(model)
    assert size.total == 4 * count_parameters(model).total and size.by_dtype == {"float32": size.total}
    assert size.quantized == 0 and size.exempt == 0


def test_rotary_tables_are_exempt_non_persistent_buffers():
    model = _gpt(positions="rotary")
    size = count_model_bytes(model)
    tables = sum(b.numel() * 4 for b in model.buffers())
    assert tables > 0 and size.exempt == tables and size.total == 4 * count_parameters(model).total


def test_quantized_model_is_counted_at_int8_with_its_scales_and_keeps_the_tie():
    model = _gpt()
    expected = _expected_int8_bytes(model)
    quantized = quantize_int8(copy.deepcopy(model))
    assert quantized.lm_head.weight is quantized.wte.weight
    size = count_model_bytes(quantized)
    assert size.by_dtype == expected and size.total == sum(expected.values())
    assert size.total < 0.3 * count_model_bytes(model).total
    assert count_parameters(quantized) == count_parameters(model)  # same numbers, fewer bytes


def test_quantized_model_computes_with_its_int8_weights():
    model = _gpt()
    quantized = quantize_int8(copy.deepcopy(model))
    decoded = copy.deepcopy(model)  # float32 model holding exactly the values the int8 weights decode to
    with torch.no_grad():
        for (name, q), p in zip(quantized.named_parameters(), decoded.parameters()):
            if type(q) is not nn.Parameter:
                p.copy_(q.dequantize())
    idx = torch.randint(0, VOCAB, (2, WINDOW))
    with torch.no_grad():
        out = quantized(idx)
        torch.testing.assert_close(out, decoded(idx), rtol=1e-4, atol=1e-4)
        reference = model(idx)
    assert not torch.allclose(out, reference, rtol=1e-5, atol=1e-5)  # rounding shows: not the float weights
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()  # but close to them


def test_a_quantized_model_is_not_saved_and_says_why(tmp_path):
    """Saved models are safetensors plus a GPT config, loaded without running code; torchao's quantized tensors are
    not plain tensors, so they are refused with the reason rather than saved in a form nothing can load."""
    record = save_model(quantize_int8(_gpt()), WINDOW, VOCAB, tmp_path / "q.model.safetensors")
    assert record.file is None and "quantized weights" in record.error and "cannot be saved" in record.error
    assert list(tmp_path.iterdir()) == []


def test_torch_ao_packed_weights_are_counted_though_they_are_not_parameters():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated; this checks it is not a loophole
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(nn.Sequential(nn.Linear(64, 32)), {nn.Linear}, dtype=torch.qint8)
    assert list(model.parameters()) == []
    size = count_model_bytes(model)
    assert size.by_dtype["qint8"] >= 64 * 32 and size.by_dtype["float32"] >= 32 * 4  # weights and bias


def test_byte_limit_parses_units_and_is_left_out_of_the_hash_when_unset():
    assert ModelLimit(max_params="2M", max_bytes="2.5MB").max_bytes == 2_500_000
    assert ModelLimit(max_params="2M", max_bytes="1MiB").max_bytes == 2**20
    with pytest.raises(ValidationError, match="max_bytes"):
        ModelLimit(max_params="2M", max_bytes=0)
    assert "max_bytes" not in ModelLimit(max_params="2M").model_dump()


def _two_million_parameter_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, seq_len=256, **{"n_layer": 9, "n_head": 4, "n_embd": 128})).eval()


def _judge(model: nn.Module, spec) -> tuple:
    counts = param_counts(model, spec)
    verdict = size_rule(OK, counts, spec)
    return counts, verdict.reason


def test_byte_limited_workload_judges_float32_invalid_with_counts_and_int8_ok():
    spec = load_workload(workload_path("tiny-int8", ROOT))
    limit = spec.model
    model = _two_million_parameter_gpt()
    counts, reason = _judge(model, spec)
    fp32 = count_model_bytes(model).total
    assert counts.counted <= limit.max_params and fp32 > limit.max_bytes == 2_500_000
    assert reason == (f"model weights take {fp32:,} bytes (float32: {fp32:,}), over the limit of 2,500,000 bytes")
    assert counts.bytes == fp32 and counts.max_bytes == 2_500_000 and counts.bytes_by_dtype == {"float32": fp32}

    counts, reason = _judge(quantize_int8(model), spec)
    assert reason is None
    assert counts.bytes <= limit.max_bytes and counts.bytes_by_dtype["int8"] > 0.9 * counts.total
    assert counts.quantized_bytes > 0.95 * counts.bytes


def test_over_both_limits_names_both():
    model = _two_million_parameter_gpt()
    spec = load_workload(workload_path("tiny", ROOT))
    spec = spec.model_copy(update={"model": ModelLimit(max_params="1M", count_embeddings=True, max_bytes="1MB")})
    _, reason = _judge(model, spec)
    params, size = reason.split("; ")
    assert params == f"model has {count_parameters(model).total:,} parameters, over the limit of 1,000,000"
    assert size.startswith("model weights take") and "over the limit of 1,000,000 bytes" in size


def _compress_module():
    return sys.modules[load_recipe_class(find_submission("train-large-compress", ROOT)).__module__]


def test_pruning_to_a_byte_limit_keeps_the_widest_model_that_fits_after_quantization():
    module = _compress_module()
    model = _gpt(mlp_ratio=8)
    limit = 30_000
    stored = lambda m: count_model_bytes(quantize_int8(copy.deepcopy(m))).total  # noqa: E731
    pruned = module.prune_to_fit(model, lambda m: stored(m) <= limit)
    width = pruned.blocks[0].mlp.c_proj.in_features
    assert stored(pruned) <= limit < stored(module._pruned_copy(model, module._unit_scores(model), width + 1))
    assert all(b.mlp.c_fc.out_features == width for b in pruned.blocks) and pruned.config.mlp_hidden == width
    assert model.blocks[0].mlp.c_proj.in_features == 8 * 32  # the model given is not modified


def test_train_large_compress_on_a_byte_limit_trains_prunes_and_quantizes_under_the_harness():
    spec = small_tiny(wall_clock=None, tokens=20_000, every=1e9)
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"max_bytes": 30_000})})
    overrides = {"n_layer": 2, "n_head": 2, "n_embd": 32, "mlp_ratio": 8, "batch_size": 4, "seq_len": 64}
    result = trial("train-large-compress", spec, overrides=overrides)
    assert result.status is TrialStatus.ok, result.reason
    assert result.params.total < count_parameters(_gpt(mlp_ratio=8)).total  # pruned for the byte limit
    assert result.final.val_loss < result.curve[0].val_loss
    assert result.params.bytes <= 30_000 == result.params.max_bytes and result.params.bytes_by_dtype["int8"] > 0
    # a quantized GPT leaves the box as an archive, whose census knows its storages' dtypes but not which are weights
    assert result.isolation.boxed is (result.params.quantized_bytes is None)


def test_a_float32_model_over_the_byte_limit_is_invalid_with_the_counts():
    spec = small_tiny(wall_clock=None, tokens=2_048, every=1e9)
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"max_bytes": 30_000})})
    overrides = {"n_layer": 1, "n_head": 2, "n_embd": 32, "batch_size": 4, "seq_len": 64}
    result = trial("adamw-baseline", spec, overrides=overrides)
    assert result.status is TrialStatus.invalid
    assert f"model weights take {result.params.bytes:,} bytes" in result.reason
    assert "over the limit of 30,000 bytes" in result.reason
    assert result.params.bytes_by_dtype == {"float32": result.params.bytes} and result.params.max_bytes == 30_000
    assert result.final is not None  # evaluated all the same, as an oversized model is

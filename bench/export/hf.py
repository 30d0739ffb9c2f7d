"""A saved GPT as a Hugging Face ``transformers`` model folder (``bench export RESULT --format hf``).

The shared GPT's variants map exactly onto three ``transformers`` architectures, weight for weight:

====================================  ====================  ============================================================
GPT switches                          architecture          notes
====================================  ====================  ============================================================
learned or no positions, LayerNorm,   ``GPT2LMHeadModel``   Conv1D weights are the transposed Linear weights; a
GELU                                                        bias-free GPT gets zero biases; no positions = a zero
                                                            position table; ``gelu`` is the exact (erf) GELU
rotary, LayerNorm, GELU               ``GPTNeoXForCausalLM``  sequential residual, rotary over the whole head;
                                                            the fused QKV rows are regrouped per head (NeoX layout)
rotary, RMSNorm, SwiGLU               ``LlamaForCausalLM``  ``gate_proj``/``up_proj``/``down_proj`` =
                                                            ``c_gate``/``c_fc``/``c_proj``; RMSNorm's eps is torch's
                                                            default (float32 machine epsilon)
====================================  ====================  ============================================================

Every rotary convention here pairs channel ``i`` with ``i + head_dim/2`` with base 10000, as the GPT does. Other
combinations (RMSNorm with learned positions, a GELU MLP with RMSNorm, SwiGLU with LayerNorm, ...) have no
``transformers`` architecture that computes exactly the same function, and are refused with the reason.

The folder also holds the workload's tokenizer as a ``PreTrainedTokenizerFast`` (the same ``tokenizers`` JSON, with
its end-of-text token as BOS, EOS and padding: the GPT conditions an empty context on end-of-text, and so does
lm-eval's ``hf`` model with that BOS), so ``AutoModelForCausalLM.from_pretrained`` and ``lm_eval --model hf`` work on
it directly. ``transformers`` is the optional extra ``hf``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from bench.errors import BenchError
from bench.train.model import GPT, GPTConfig

ROPE_BASE = 10000.0  # bench.train.model.Rotary's default


def architecture(config: GPTConfig) -> str:
    """The ``transformers`` architecture that computes exactly what a GPT with ``config`` does, else BenchError."""
    choice = (config.positions, config.norm, config.mlp)
    if config.positions in ("learned", "none") and config.norm == "layernorm" and config.mlp == "gelu":
        return "GPT2LMHeadModel"
    if choice == ("rotary", "layernorm", "gelu"):
        return "GPTNeoXForCausalLM"
    if choice == ("rotary", "rmsnorm", "swiglu"):
        return "LlamaForCausalLM"
    raise BenchError(
        f"model config positions={config.positions}, norm={config.norm}, mlp={config.mlp} has no exact Hugging Face "
        "equivalent; exportable: learned/none + layernorm + gelu (GPT-2), rotary + layernorm + gelu (GPT-NeoX), "
        "rotary + rmsnorm + swiglu (Llama). The model stays available to `bench eval` as saved"
    )


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise BenchError(
            "exporting to Hugging Face needs transformers: pip install 'pretrain-bench[hf]'"
        ) from None
    return transformers


def hf_config(config: GPTConfig, eos_id: int) -> Any:
    """The ``transformers`` config of the architecture :func:`architecture` picks for ``config``."""
    tf = _transformers()
    common = {"vocab_size": config.vocab_size, "bos_token_id": eos_id, "eos_token_id": eos_id,
              "pad_token_id": eos_id, "tie_word_embeddings": config.tie_weights}
    name = architecture(config)
    if name == "GPT2LMHeadModel":
        return tf.GPT2Config(
            n_positions=config.seq_len, n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head,
            n_inner=config.mlp_hidden, activation_function="gelu", layer_norm_epsilon=1e-5,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, architectures=[name], **common,
        )
    if name == "GPTNeoXForCausalLM":
        return tf.GPTNeoXConfig(
            hidden_size=config.n_embd, num_hidden_layers=config.n_layer, num_attention_heads=config.n_head,
            intermediate_size=config.mlp_hidden, hidden_act="gelu", max_position_embeddings=config.seq_len,
            layer_norm_eps=1e-5, use_parallel_residual=False, attention_bias=config.bias,
            rope_parameters={"rope_type": "default", "rope_theta": ROPE_BASE, "partial_rotary_factor": 1.0},
            attention_dropout=0.0, hidden_dropout=0.0, architectures=[name], **common,
        )
    return tf.LlamaConfig(
        hidden_size=config.n_embd, intermediate_size=config.mlp_hidden, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.n_head, hidden_act="silu",
        max_position_embeddings=config.seq_len, rms_norm_eps=float(torch.finfo(torch.float32).eps),
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_BASE}, attention_bias=config.bias,
        mlp_bias=config.bias, attention_dropout=0.0, architectures=[name], **common,
    )


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The GPT's weights under the names (and layouts) of its ``transformers`` architecture."""
    config = model.config
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    name = architecture(config)
    if name == "GPT2LMHeadModel":
        return _gpt2(model, sd)
    if name == "GPTNeoXForCausalLM":
        return _neox(model, sd)
    return _llama(model, sd)


def _bias_or_zeros(sd: dict[str, torch.Tensor], key: str, size: int, like: torch.Tensor) -> torch.Tensor:
    return sd.get(key, torch.zeros(size, dtype=like.dtype, device=like.device))


def _gpt2(model: GPT, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    c = model.config
    wte = sd["wte.weight"]
    out = {
        "transformer.wte.weight": wte,
        "transformer.wpe.weight": sd.get("wpe.weight", torch.zeros(c.seq_len, c.n_embd, dtype=wte.dtype)),
        "transformer.ln_f.weight": sd["ln_f.weight"],
        "transformer.ln_f.bias": _bias_or_zeros(sd, "ln_f.bias", c.n_embd, wte),
        "lm_head.weight": sd["lm_head.weight"],
    }
    linears = {"attn.c_attn": "attn.c_attn", "attn.c_proj": "attn.c_proj", "mlp.c_fc": "mlp.c_fc",
               "mlp.c_proj": "mlp.c_proj"}
    for i in range(c.n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        for norm in ("ln_1", "ln_2"):
            out[f"{theirs}{norm}.weight"] = sd[f"{ours}{norm}.weight"]
            out[f"{theirs}{norm}.bias"] = _bias_or_zeros(sd, f"{ours}{norm}.bias", c.n_embd, wte)
        for src, dst in linears.items():
            weight = sd[f"{ours}{src}.weight"]
            out[f"{theirs}{dst}.weight"] = weight.t().contiguous()  # Conv1D stores (in, out)
            out[f"{theirs}{dst}.bias"] = _bias_or_zeros(sd, f"{ours}{src}.bias", weight.shape[0], wte)
    return out


def _neox(model: GPT, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    c = model.config
    wte = sd["wte.weight"]
    out = {
        "gpt_neox.embed_in.weight": wte,
        "gpt_neox.final_layer_norm.weight": sd["ln_f.weight"],
        "gpt_neox.final_layer_norm.bias": _bias_or_zeros(sd, "ln_f.bias", c.n_embd, wte),
        "lm_head.weight": sd["lm_head.weight"],
    }
    for i in range(c.n_layer):
        ours, theirs = f"blocks.{i}.", f"gpt_neox.layers.{i}."
        for src, dst in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
            out[f"{theirs}{dst}.weight"] = sd[f"{ours}{src}.weight"]
            out[f"{theirs}{dst}.bias"] = _bias_or_zeros(sd, f"{ours}{src}.bias", c.n_embd, wte)
        # ours: rows [q heads | k heads | v heads]; NeoX: per head [q | k | v] (it views the output as (H, 3*hd)).
        qkv = sd[f"{ours}attn.c_attn.weight"].view(3, c.n_head, c.head_dim, c.n_embd)
        out[f"{theirs}attention.query_key_value.weight"] = qkv.transpose(0, 1).reshape(3 * c.n_embd, c.n_embd)
        out[f"{theirs}attention.dense.weight"] = sd[f"{ours}attn.c_proj.weight"]
        if c.bias:
            qkv_bias = sd[f"{ours}attn.c_attn.bias"].view(3, c.n_head, c.head_dim)
            out[f"{theirs}attention.query_key_value.bias"] = qkv_bias.transpose(0, 1).reshape(3 * c.n_embd)
            out[f"{theirs}attention.dense.bias"] = sd[f"{ours}attn.c_proj.bias"]
        for src, dst, size in (("c_fc", "dense_h_to_4h", c.mlp_hidden), ("c_proj", "dense_4h_to_h", c.n_embd)):
            out[f"{theirs}mlp.{dst}.weight"] = sd[f"{ours}mlp.{src}.weight"]
            out[f"{theirs}mlp.{dst}.bias"] = _bias_or_zeros(sd, f"{ours}mlp.{src}.bias", size, wte)  # always biased
    return out


def _llama(model: GPT, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    c = model.config
    out = {
        "model.embed_tokens.weight": sd["wte.weight"],
        "model.norm.weight": sd["ln_f.weight"],
        "lm_head.weight": sd["lm_head.weight"],
    }
    for i in range(c.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        out[f"{theirs}input_layernorm.weight"] = sd[f"{ours}ln_1.weight"]
        out[f"{theirs}post_attention_layernorm.weight"] = sd[f"{ours}ln_2.weight"]
        for part in ("weight", "bias") if c.bias else ("weight",):
            q, k, v = sd[f"{ours}attn.c_attn.{part}"].split(c.n_embd, dim=0)
            out |= {f"{theirs}self_attn.q_proj.{part}": q, f"{theirs}self_attn.k_proj.{part}": k,
                    f"{theirs}self_attn.v_proj.{part}": v}
            out[f"{theirs}self_attn.o_proj.{part}"] = sd[f"{ours}attn.c_proj.{part}"]
            for src, dst in (("c_gate", "gate_proj"), ("c_fc", "up_proj"), ("c_proj", "down_proj")):
                out[f"{theirs}mlp.{dst}.{part}"] = sd[f"{ours}mlp.{src}.{part}"]
    return out


def to_hf(model: GPT, eos_id: int) -> Any:
    """A ``transformers`` causal LM computing the same logits as ``model`` (float32 rounding aside)."""
    tf = _transformers()
    config = hf_config(model.config, eos_id)
    dtype = next(model.parameters()).dtype
    hf = tf.AutoModelForCausalLM.from_config(config, dtype=dtype)
    weights = {k: v.contiguous().clone() for k, v in hf_state_dict(model).items()}
    missing, unexpected = hf.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if model.config.tie_weights else set()
    if set(missing) - tied or unexpected:
        raise BenchError(
            f"Hugging Face {config.architectures[0]} from transformers {tf.__version__} has other weights than "
            f"expected (missing {sorted(set(missing) - tied)[:4]}, unexpected {sorted(unexpected)[:4]})"
        )
    if model.config.tie_weights:
        hf.tie_weights()
    return hf.eval()


def hf_tokenizer(tokenizer: Tokenizer, eos_id: int, seq_len: int) -> Any:
    """The workload's tokenizer as a ``PreTrainedTokenizerFast`` with end-of-text as BOS, EOS and padding."""
    tf = _transformers()
    eos = tokenizer.id_to_token(eos_id)
    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer.to_str()), bos_token=eos, eos_token=eos, pad_token=eos,
        model_max_length=seq_len, clean_up_tokenization_spaces=False,
    )
    return fast


def export_hf(model: GPT, tokenizer: Tokenizer, eos_id: int, seq_len: int, out: Path,
              provenance: dict[str, Any]) -> Path:
    """Write ``model`` and ``tokenizer`` to the folder ``out`` in Hugging Face format; returns ``out``.

    ``provenance`` (run id, workload and submission with their hashes) goes to ``bench_export.json`` beside them,
    so the folder says where it came from.
    """
    architecture(model.config)  # the clear refusal first, before transformers is imported
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"{out}: the output folder exists and is not empty; name a new one")
    hf = to_hf(model.to("cpu"), eos_id)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    hf_tokenizer(tokenizer, eos_id, seq_len).save_pretrained(out)
    (out / "bench_export.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n", encoding="utf-8")
    return out


def loaded_logits_gap(model: GPT, folder: Path, batch: int = 2) -> float:
    """Largest absolute difference between ``model``'s logits and those of the folder loaded back with
    ``AutoModelForCausalLM.from_pretrained``, on random tokens over the whole context."""
    tf = _transformers()
    hf = tf.AutoModelForCausalLM.from_pretrained(folder).eval()
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.config.vocab_size, (batch, model.config.seq_len), generator=generator)
    with torch.no_grad():
        return float((hf(tokens).logits.float() - model.eval()(tokens).float()).abs().max())

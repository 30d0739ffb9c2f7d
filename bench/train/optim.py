"""Optimizers for the baselines, with the standard parameter groups, built by name.

Where each comes from, and why:

- ``adamw``: ``torch.optim.AdamW``, fused on CUDA (one kernel for the whole update).
- ``lion`` (Chen et al. 2023), ``lamb`` (You et al. 2019), ``sophia`` (Liu et al. 2023): from
  ``pytorch_optimizer`` (Apache-2.0, maintained, tested against the papers); torch ships none of them.
- ``muon`` (Jordan et al. 2024): ``pytorch_optimizer.Muon``. torch 2.13 has ``torch.optim.Muon``, but it accepts
  only 2-D tensors, so a GPT would need it paired with AdamW through a hand-written composite optimizer;
  ``pytorch_optimizer.Muon`` is that pairing already, as one optimizer with one state dict: groups flagged
  ``use_muon`` get orthogonalised momentum, the others AdamW, as in modded-nanogpt.

Parameter groups (:func:`split_parameters`): weight decay applies to weight matrices only, never to biases, norm
gains or embedding tables (decaying those shrinks features the model cannot re-scale elsewhere). Muon
orthogonalises hidden weight matrices only; the embedding table, the output head and all vectors take AdamW,
because orthogonalising a lookup table or the logit projection has no justification in Muon's derivation.

Sophia needs a diagonal Hessian estimate every ``update_period`` steps. ``pytorch_optimizer.SophiaH`` would
compute a Hutchinson estimate itself, which needs ``backward(create_graph=True)``: a second-order backward that
the fused attention kernels do not implement. The training loop instead supplies the Gauss-Newton-Bartlett
estimate the Sophia paper uses for language models (Sophia-G), which needs one ordinary extra forward and
backward on the steps that refresh the estimate: Sophia's entry in :data:`OPTIMIZERS` carries that step
(:func:`sophia_step`), and any loop that steps through :func:`optimizer_step` gets it. In SophiaH's update
``p`` plays the paper's ``rho`` with the learning rate folded in: the paper's ``(lr, rho)`` is ``lr=lr/rho, p=rho`` here, except that the paper's code scales the estimate by all tokens of a
step while :func:`gauss_newton_bartlett` scales by the tokens it saw; with ``k``-fold gradient accumulation the
paper's ``rho`` therefore corresponds to ``p = k * rho``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_optimizer
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError

Closure = Callable[[], torch.Tensor]
"""Re-runs the step's last forward pass and returns its logits (with their graph), for optimizers that need more
than the gradients; the loop builds it, with the loop's precision, on the bare module when training under DDP."""


def split_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Sort the trainable parameters into ``matrix`` (hidden weight matrices), ``head`` (the output projection,
    recognised by the nanoGPT / Hugging Face module name ``lm_head``), ``embedding`` (``nn.Embedding`` tables,
    including a head tied to one) and ``other`` (biases, norm gains, any 0-D/1-D tensor)."""
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    head = {id(p) for name, m in model.named_modules() if name.rpartition(".")[2] == "lm_head" for p in m.parameters()}
    groups: dict[str, list[nn.Parameter]] = {"matrix": [], "head": [], "embedding": [], "other": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in embedding:
            groups["embedding"].append(p)
        elif p.ndim < 2:
            groups["other"].append(p)
        elif id(p) in head:
            groups["head"].append(p)
        else:
            groups["matrix"].append(p)
    return groups


def decayed_groups(parts: dict[str, list[nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on the weight matrices and the head; none on embeddings, biases and norm gains."""
    return [
        {"params": parts["matrix"] + parts["head"], "weight_decay": weight_decay},
        {"params": parts["embedding"] + parts["other"], "weight_decay": 0.0},
    ]


def muon_groups(parts: dict[str, list[nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """Muon orthogonalises the hidden weight matrices; everything else takes its AdamW group."""
    return [
        {"params": parts["matrix"], "use_muon": True},
        {"params": parts["head"] + parts["embedding"] + parts["other"], "use_muon": False},
    ]


def plain_step(optimizer: torch.optim.Optimizer, closure: Closure) -> None:
    optimizer.step()


def hessian_due(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is Sophia and its next step must be given a Hessian estimate.

    SophiaH refreshes its estimate on the steps where its step count is a multiple of ``update_period``; on
    those steps it must receive one (see the module docstring), on the others it needs none.
    """
    if not isinstance(optimizer, pytorch_optimizer.SophiaH):
        return False
    return optimizer.param_groups[0].get("step", 0) % optimizer.update_period == 0


def sophia_step(optimizer: torch.optim.Optimizer, closure: Closure) -> None:
    """Sophia-G: the Gauss-Newton-Bartlett estimate from one extra forward, on the steps that refresh it, averaged
    over the ranks of a multi-GPU trial (each rank estimates on its own batch; DDP averages the gradients, and the
    estimate must be averaged alike, or the ranks' optimizer states and then their weights drift apart)."""
    if hessian_due(optimizer):
        optimizer.step(hessian=average_over_ranks(gauss_newton_bartlett(optimizer, closure())))
    else:
        optimizer.step()


def average_over_ranks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over the ranks of ``torch.distributed`` (the tensors themselves with one rank), in one
    all-reduce of the tensors laid end to end."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def keep_options(options: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
    return options


def adamw_options(options: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Fused AdamW (one kernel for the whole update) when every parameter is on CUDA, unless the caller chose."""
    if "fused" in options or "foreach" in options:
        return options
    return {**options, "fused": all(p.is_cuda for g in groups for p in g["params"])}


@dataclass(frozen=True)
class OptimizerKind:
    """Everything the shared loop needs to know about one optimizer, so that the loop has no per-optimizer code.

    ``groups`` makes the parameter groups from :func:`split_parameters`; ``defaults`` fill options the caller did
    not give; ``options`` adjusts the options for the groups (e.g. fused kernels on CUDA); ``step`` takes one
    optimizer step, given a closure that re-runs the forward pass.
    """

    cls: type[torch.optim.Optimizer]
    groups: Callable[[dict[str, list[nn.Parameter]], float], list[dict[str, Any]]] = decayed_groups
    defaults: dict[str, Any] = field(default_factory=dict)
    options: Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]] = keep_options
    step: Callable[[torch.optim.Optimizer, Closure], None] = plain_step


# SophiaH's defaults are tuned for its own Hutchinson estimate; these are the Sophia-G settings of the paper's
# GPT-2 runs (betas, rho as ``p``, a Hessian estimate every 10 steps), as a starting point.
OPTIMIZERS: dict[str, OptimizerKind] = {
    "adamw": OptimizerKind(torch.optim.AdamW, options=adamw_options),
    "lion": OptimizerKind(pytorch_optimizer.Lion),
    "lamb": OptimizerKind(pytorch_optimizer.Lamb),
    "sophia": OptimizerKind(
        pytorch_optimizer.SophiaH, defaults={"betas": (0.965, 0.99), "p": 0.05, "update_period": 10}, step=sophia_step
    ),
    "muon": OptimizerKind(pytorch_optimizer.Muon, groups=muon_groups),
}


def check_options(name: str, options: dict[str, Any]) -> None:
    """Reject unknown options here, since the ``pytorch_optimizer`` classes swallow unknown keywords silently."""
    accepted = set(inspect.signature(OPTIMIZERS[name].cls).parameters) - {"self", "params", "lr", "weight_decay", "kwargs"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BenchError(f"optimizer '{name}' has no option {unknown}; it accepts {sorted(accepted)}")


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float = 0.0, **options: Any
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` over ``model``'s trainable parameters, with the groups its kind makes.

    ``lr`` and ``weight_decay`` apply to the weight matrices (for Muon: the Muon group; its AdamW group takes
    ``adamw_lr``, ``adamw_betas``, ``adamw_wd`` from ``options``). Other ``options`` go to the optimizer's
    constructor. The learning rates set here are the peaks that :func:`bench.train.loop.train_lm` schedules.
    """
    if name not in OPTIMIZERS:
        raise BenchError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    kind = OPTIMIZERS[name]
    check_options(name, options)
    groups = [g for g in kind.groups(split_parameters(model), weight_decay) if g["params"]]
    options = kind.options({**kind.defaults, **options}, groups)
    return kind.cls(groups, lr=lr, weight_decay=weight_decay, **options)


_STEPS = {kind.cls: kind.step for kind in OPTIMIZERS.values()}


def optimizer_step(optimizer: torch.optim.Optimizer, closure: Closure) -> None:
    """One step of ``optimizer`` as its kind takes it; also for an optimizer a recipe built itself."""
    _STEPS.get(type(optimizer), plain_step)(optimizer, closure)


def gauss_newton_bartlett(optimizer: torch.optim.Optimizer, logits: torch.Tensor) -> list[torch.Tensor]:
    """Sophia-G's diagonal Hessian estimate, one tensor per parameter in the optimizer's group order.

    Labels are sampled from the model's own predictive distribution, so per-token gradients have mean zero
    (Bartlett's identity) and the squared mean gradient times the number of tokens estimates the per-token
    Gauss-Newton diagonal. ``logits`` must come from a forward pass with its graph; the gradients are taken with
    ``torch.autograd.grad``, so the training gradients in ``.grad`` are left untouched.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    flat = logits.flatten(0, -2).float()
    with torch.no_grad():
        sampled = torch.multinomial(F.softmax(flat, dim=-1), num_samples=1).squeeze(-1)
    loss = F.cross_entropy(flat, sampled)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    tokens = sampled.numel()
    return [torch.zeros_like(p) if g is None else g.square().mul_(tokens) for p, g in zip(params, grads)]

"""Post-training int8 weight quantization with torchao, for models that must fit a byte limit.

torchao is PyTorch's maintained quantization library (``torch.ao.quantization`` is deprecated in its favour).
Its weight-only int8 scheme stores each weight matrix as int8 values with one float32 scale per output row
(symmetric: the zero point is zero, but torchao keeps an int8 zero-point tensor, which is counted), and runs on the
CPU as well as on GPUs: the model that is evaluated computes with these int8 weights (dequantized per row inside
the matmul), not with a float copy. Activations stay in floating point, so no calibration data is needed.

The embedding tables are quantized too, with the same per-row scheme (a row is one token's vector, decoded by its
own scale). A head tied to the token embedding stays tied: both modules get the *same* quantized tensor, which is
correct for both uses because the head's output row ``i`` and the embedding's row ``i`` are the same row, and it
is stored once. Norm weights and biases stay in float32: they are a few thousand numbers, and quantizing them
costs accuracy for no measurable saving.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from bench.errors import BenchError

QUANTIZED_MODULES = (nn.Linear, nn.Embedding)


def _import_torchao():  # noqa: ANN202 - the torchao.quantization module
    """Import torchao quietly: on a machine without its CUDA kernels (any CPU machine) its import logs a warning
    per kernel library it cannot load, none of which the CPU weight-only path uses, and torch logs a deprecation
    notice about how torchao registers an enum with torch.compile; neither is for the user of a benchmark."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        import torchao.quantization as quantization
    except ImportError as exc:
        raise BenchError(f"int8 quantization needs torchao (pip install torchao): {exc}") from None
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return quantization


# Imported with this module, not on first use: torchao's import takes seconds, and a recipe imports this module
# while the harness loads it (set-up, off the clock), whereas its first quantization runs on the training clock.
_quantization = _import_torchao()


def _shared_weights(model: nn.Module) -> list[list[nn.Module]]:
    """Groups of quantizable modules whose ``weight`` is one tensor (a tied embedding and head)."""
    groups: dict[int, list[nn.Module]] = {}
    for module in model.modules():
        if isinstance(module, QUANTIZED_MODULES):
            groups.setdefault(id(module.weight), []).append(module)
    return [group for group in groups.values() if len(group) > 1]


@torch.no_grad()
def quantize_int8(model: nn.Module) -> nn.Module:
    """Quantize the weights of every ``nn.Linear`` and ``nn.Embedding`` of ``model`` to int8, in place; returns it.

    The weights become torchao ``Int8Tensor`` parameters without gradients: the model is for evaluation (or
    export), not for further training. Ties between modules survive (see the module docstring).
    """
    tied = _shared_weights(model)
    _quantization.quantize_(
        model, _quantization.Int8WeightOnlyConfig(), filter_fn=lambda module, _: isinstance(module, QUANTIZED_MODULES)
    )
    for group in tied:  # quantize_ replaced each module's weight separately; share the first one's again
        for module in group[1:]:
            module.weight = group[0].weight
    return model

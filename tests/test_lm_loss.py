"""The chunked LM-head cross-entropy equals the plain one (loss and gradients, fp32 and bf16 autocast), never
holds more than one chunk of logits, and traces under torch.compile with the model's forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from bench.train import lm_loss
from bench.train.lm_loss import linear_cross_entropy
from bench.train.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("single_thread")

N, C, V = 300, 64, 1000
CHUNK_ROWS = 64  # 300 tokens: four chunks of 64 and one of 44


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(lm_loss, "CHUNK_ELEMENTS", CHUNK_ROWS * V)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, C, generator=generator).requires_grad_()
    weight = (0.1 * torch.randn(V, C, generator=generator)).requires_grad_()
    return hidden, weight, torch.randint(0, V, (N,), generator=generator)


def _plain(hidden, weight, targets):
    return F.cross_entropy(F.linear(hidden, weight).float(), targets)


def _loss_and_grads(loss_fn, hidden, weight, targets, bf16: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(hidden, weight, targets)
    return (loss, *torch.autograd.grad(loss, (hidden, weight)))


def test_fp32_loss_and_gradients_equal_the_plain_ones(small_chunks):
    plain = _loss_and_grads(_plain, *_inputs())
    chunked = _loss_and_grads(linear_cross_entropy, *_inputs())
    for a, b in zip(plain, chunked):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


def test_bf16_autocast_loss_and_gradients_equal_the_plain_ones_to_bf16_rounding(small_chunks):
    plain = _loss_and_grads(_plain, *_inputs(), bf16=True)
    chunked = _loss_and_grads(linear_cross_entropy, *_inputs(), bf16=True)
    reference = _loss_and_grads(_plain, *_inputs())  # fp32: what both approximate
    torch.testing.assert_close(chunked[0], plain[0], rtol=1e-6, atol=1e-6)  # the same bf16 logits, fp32 softmax
    for a, b, exact in zip(plain[1:], chunked[1:], reference[1:]):
        assert b.dtype == a.dtype == torch.float32
        scale = a.abs().max()
        torch.testing.assert_close(b, a, rtol=0, atol=2**-7 * scale)  # within bf16 rounding of the largest entry
        assert (b - exact).abs().max() <= (a - exact).abs().max() * 1.01  # and no further from fp32 than the plain


def test_a_batch_that_fits_one_chunk_is_the_plain_computation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, seq_len=32, n_layer=1, n_head=2, n_embd=C))
    x, y = torch.randint(0, V, (2, 32)), torch.randint(0, V, (2, 32))
    assert torch.equal(model(x, y), F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten()))


def test_the_gpt_loss_trains_every_parameter_as_the_plain_loss_does(small_chunks):
    """Through the whole model, the tied head and embedding included."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, seq_len=50, n_layer=2, n_head=2, n_embd=C))
    x, y = torch.randint(0, V, (6, 50)), torch.randint(0, V, (6, 50))
    params = list(model.parameters())
    plain = F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())
    plain_grads = torch.autograd.grad(plain, params)
    chunked = model(x, y)
    chunked_grads = torch.autograd.grad(chunked, params)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    for a, b in zip(plain_grads, chunked_grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def test_no_more_than_one_chunk_of_logits_exists(small_chunks):
    hidden, weight, targets = _inputs()
    with LargestTensor() as seen:
        loss = linear_cross_entropy(hidden, weight, targets)
        loss.backward()
    assert seen.largest == CHUNK_ROWS * V < N * V
    with LargestTensor() as plain:
        _plain(*_inputs()).backward()
    assert plain.largest == N * V


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile's own imports
def test_it_traces_under_torch_compile_with_the_models_forward(small_chunks):
    """Dynamo and AOTAutograd (the aot_eager backend: the graph torch.compile would give Inductor)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, seq_len=50, n_layer=1, n_head=2, n_embd=C))
    x, y = torch.randint(0, V, (6, 50)), torch.randint(0, V, (6, 50))
    eager = model(x, y)
    eager_grads = torch.autograd.grad(eager, list(model.parameters()))
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x, y)
    compiled_grads = torch.autograd.grad(compiled, list(model.parameters()))
    torch.testing.assert_close(compiled, eager)
    for a, b in zip(eager_grads, compiled_grads):
        torch.testing.assert_close(b, a)

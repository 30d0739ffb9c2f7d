"""Counter-based random numbers: SplitMix64 outputs addressed by (key, counter).

The corpus must be identical on every machine and every Python/NumPy version, and document ``i`` must be
computable without generating documents ``0..i-1``. NumPy's ``Generator`` promises neither its distribution
methods' streams across versions nor random access, so every random number here is the SplitMix64 finaliser
applied to ``key + (counter + 1) * GAMMA``: pure 64-bit integer arithmetic, identical in Python ints and in
NumPy ``uint64`` arrays (whose multiplication wraps modulo 2**64 by definition).
"""

from __future__ import annotations

import numpy as np

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _finalise(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & MASK
    z = ((z ^ (z >> 27)) * _M2) & MASK
    return z ^ (z >> 31)


def derive(parent: int, label: int) -> int:
    """A child key: distinct labels give unrelated streams (used for seed -> grammar, stream, document)."""
    return _finalise(((_finalise(parent & MASK) ^ (label & MASK)) + GAMMA) & MASK)


def draw(key: int, counter: int) -> int:
    """The ``counter``-th 64-bit output of the stream ``key``."""
    return _finalise((key + (counter + 1) * GAMMA) & MASK)


def _finalise_array(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def derive_array(parent: int, labels: np.ndarray) -> np.ndarray:
    """:func:`derive` for many labels at once (``uint64`` in, ``uint64`` out, bit-identical to the scalar)."""
    return _finalise_array((np.uint64(_finalise(parent & MASK)) ^ labels.astype(np.uint64)) + np.uint64(GAMMA))


def draw_array(keys: np.ndarray, counter: int) -> np.ndarray:
    """:func:`draw` for many keys at the same counter (``uint64``, bit-identical to the scalar)."""
    return _finalise_array(keys + np.uint64((counter + 1) * GAMMA & MASK))

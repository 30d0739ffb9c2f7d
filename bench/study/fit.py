"""Scaling-law fits: L(N, D) = E + A / N^alpha + B / D^beta, as in Hoffmann et al. 2022 (Chinchilla, approach 3).

The fit minimises the Huber loss (delta = 1e-3) of the residuals in log space,
``LSE(a - alpha log N, b - beta log D, e) - log L`` with ``A, B, E = exp(a), exp(b), exp(e)``, by L-BFGS-B: the log
form keeps the three terms positive and on one scale, and the Huber loss keeps a diverged or unlucky run from
dragging the fit. The objective has poor local minima, so it is started from the best points of a grid of
initialisations (the paper's grid, evaluated at every point first; only the most promising few are optimised).

Uncertainty comes from the bootstrap: runs are resampled with replacement and refitted, and intervals are
percentiles of the refits. With the handful of runs a small study has, those intervals are wide, and they say so.

Compute-optimal allocation under C = 6 N D: substituting D = C / (6N) and setting dL/dN = 0 gives
``alpha A / N^alpha = beta B / D^beta``, hence, with ``G = (alpha A / (beta B))^(1 / (alpha + beta))``,

    N_opt(C) = G (C/6)^(beta / (alpha + beta)),     D_opt(C) = (C/6)^(alpha / (alpha + beta)) / G,

    D_opt / N_opt = G^-2 (C/6)^((alpha - beta) / (alpha + beta)),

so the tokens-per-parameter ratio is a constant (Chinchilla's ~20) only when alpha = beta; otherwise it drifts
with the budget, and it is reported at stated compute budgets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

HUBER_DELTA = 1e-3
CONFIDENCE = 0.95
N_BOOTSTRAP = 200
GRID_STARTS = 8
"""Grid points optimised for the fit to all runs: the best by objective value, out of the whole grid."""
BOOTSTRAP_GRID_STARTS = 1
"""Grid points optimised per bootstrap refit, besides the fit to all runs (a resample lies close to the data)."""

# Hoffmann et al.'s grid of initialisations (alpha and beta from 0.1 rather than 0, where the terms are constant).
_GRID = (
    np.array(
        np.meshgrid(
            np.arange(0.0, 30.0, 5.0),  # a = log A
            np.arange(0.0, 30.0, 5.0),  # b = log B
            np.arange(-1.0, 1.5, 0.5),  # e = log E
            np.array([0.1, 0.5, 1.0, 1.5, 2.0]),  # alpha
            np.array([0.1, 0.5, 1.0, 1.5, 2.0]),  # beta
            indexing="ij",
        )
    )
    .reshape(5, -1)
    .T
)
_BOUNDS = [(-10.0, 60.0), (-10.0, 60.0), (-10.0, 5.0), (0.01, 3.0), (0.01, 3.0)]
_NAMES = ("A", "B", "E", "alpha", "beta")  # what each coordinate (a, b, e, alpha, beta) of the search determines


@dataclass(frozen=True)
class ScalingLaw:
    """``L(N, D) = E + A / N^alpha + B / D^beta``; N in parameters, D in training tokens, L in nats per token."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N: np.ndarray | float, D: np.ndarray | float) -> np.ndarray:
        return self.E + self.A / np.power(N, self.alpha) + self.B / np.power(D, self.beta)

    def compute_optimal(self, C: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``(N_opt, D_opt)`` minimising the loss at training compute ``C = 6 N D`` (see the module docstring)."""
        s = self.alpha + self.beta
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        c = np.asarray(C, dtype=float) / 6.0
        return G * c ** (self.beta / s), c ** (self.alpha / s) / G

    def tokens_per_parameter(self, C: np.ndarray | float) -> np.ndarray:
        N, D = self.compute_optimal(C)
        return D / N

    def frontier(self, C: np.ndarray | float) -> np.ndarray:
        """The lowest loss reachable with compute ``C``: the loss at the compute-optimal split."""
        return self.loss(*self.compute_optimal(C))


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class ScalingFit:
    """The fit to all runs, and the bootstrap refits that give its intervals."""

    law: ScalingLaw
    samples: tuple[ScalingLaw, ...]
    runs: int
    at_bounds: tuple[str, ...] = ()  # parameters the fit left on an edge of the search range: not determined
    confidence: float = CONFIDENCE

    def interval(self, quantity: Callable[[ScalingLaw], float]) -> Interval:
        """``quantity`` of the fit, with the bootstrap percentile interval of the same quantity over the refits."""
        values = np.array([quantity(s) for s in self.samples], dtype=float)
        tail = (1.0 - self.confidence) / 2.0 * 100.0
        low, high = np.percentile(values, [tail, 100.0 - tail]) if values.size else (np.nan, np.nan)
        return Interval(float(quantity(self.law)), float(low), float(high))

    def parameter(self, name: str) -> Interval:
        return self.interval(lambda law: getattr(law, name))


def _logsumexp(terms: np.ndarray) -> np.ndarray:
    """``log(sum(exp(terms), axis=0))`` without overflow (numpy: scipy's is ~20x slower on arrays this small)."""
    top = terms.max(axis=0)
    return top + np.log(np.exp(terms - top).sum(axis=0))


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> tuple[float, np.ndarray]:
    """Huber loss of the log residuals, divided by delta so that values and gradients are of order one."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    lse = _logsumexp(terms)
    r = lse - log_l
    small = np.abs(r) <= HUBER_DELTA
    value = np.where(small, 0.5 * r**2 / HUBER_DELTA, np.abs(r) - 0.5 * HUBER_DELTA).sum()
    slope = np.clip(r / HUBER_DELTA, -1.0, 1.0)  # d huber / d r, divided by delta
    w = np.exp(terms - lse) * slope  # d r / d term_k = softmax weight k
    grad = np.array([w[0].sum(), w[1].sum(), w[2].sum(), -(w[0] * log_n).sum(), -(w[1] * log_d).sum()])
    return float(value), grad


def _grid_values(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> np.ndarray:
    """The objective at every grid point at once (no gradients): only for choosing where to start."""
    g = _GRID[:, :, None]
    terms = np.stack(
        [g[:, 0] - g[:, 3] * log_n, g[:, 1] - g[:, 4] * log_d, np.broadcast_to(g[:, 2], (len(_GRID), log_n.size))]
    )
    r = np.abs(_logsumexp(terms) - log_l)
    return np.where(r <= HUBER_DELTA, 0.5 * r**2 / HUBER_DELTA, r - 0.5 * HUBER_DELTA).sum(axis=1)


def _fit(
    log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, starts: list[np.ndarray], grid_starts: int
) -> np.ndarray:
    """L-BFGS-B from ``starts`` and from the ``grid_starts`` best points of the initialisation grid; the best wins."""
    best = np.argsort(_grid_values(log_n, log_d, log_l))[:grid_starts]
    fits = [
        minimize(_objective, x0, args=(log_n, log_d, log_l), jac=True, method="L-BFGS-B", bounds=_BOUNDS)
        for x0 in [*starts, *_GRID[best]]
    ]
    return min(fits, key=lambda f: f.fun).x


def _law(theta: np.ndarray) -> ScalingLaw:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return ScalingLaw(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)


def _logs(N: np.ndarray, D: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N, D, L = (np.asarray(x, dtype=float) for x in (N, D, L))
    if not (N.shape == D.shape == L.shape) or N.ndim != 1:
        raise ValueError("N, D and L must be 1-d arrays of one length")
    if (N <= 0).any() or (D <= 0).any() or (L <= 0).any() or not np.isfinite(L).all():
        raise ValueError("N, D and L must be positive and finite")
    return np.log(N), np.log(D), np.log(L)


def fit_scaling_law(
    N: np.ndarray, D: np.ndarray, L: np.ndarray, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> ScalingFit:
    """Fit ``L(N, D)`` to runs (parameters, tokens, final loss) and bootstrap it ``n_bootstrap`` times.

    Each refit starts from the full fit as well as from its own best grid point, which makes the bootstrap
    affordable (two optimisations per refit) without letting the full fit's basin decide every refit.
    """
    log_n, log_d, log_l = _logs(N, D, L)
    rng = np.random.default_rng(seed)
    samples = []
    # L-BFGS-B's vector operations on five numbers go through BLAS; its threads only cost wake-ups (20x slower
    # measured on a busy two-core machine), so the fit runs single-threaded.
    with threadpool_limits(limits=1, user_api="blas"):
        theta = _fit(log_n, log_d, log_l, [], GRID_STARTS)
        for _ in range(n_bootstrap):
            i = rng.integers(0, log_n.size, log_n.size)
            samples.append(_law(_fit(log_n[i], log_d[i], log_l[i], [theta], BOOTSTRAP_GRID_STARTS)))
    edges = [name for name, x, (low, high) in zip(_NAMES, theta, _BOUNDS) if np.isclose(x, low) or np.isclose(x, high)]
    return ScalingFit(_law(theta), tuple(samples), int(log_n.size), tuple(edges))

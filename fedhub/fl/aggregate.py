"""Aggregation math: pure functions on flat parameter vectors.

Every function here takes and returns numpy arrays and has no state: the strategies keep
their state (momentum, second moments, control variates) and pass it in. That keeps the
math testable against hand-computed values (tests/fl/test_aggregate.py) and lets a
checkpoint hold strategy state as plain arrays.

Shapes: ``updates`` is ``(n_clients, dim)``; ``weights`` is ``(n_clients,)``.
"""

from __future__ import annotations

import numpy as np


def _as_matrix(updates: np.ndarray | list[np.ndarray]) -> np.ndarray:
    mat = np.asarray(updates)
    if mat.ndim != 2 or mat.shape[0] == 0:
        raise ValueError("updates must be a non-empty (n_clients, dim) array")
    return mat


def weighted_average(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average weighted by ``weights`` (usually example counts).

    The weights are normalised over the clients that reported, not over the clients that
    were sampled: that is the FedAvg erratum (McMahan et al., v4 of arXiv:1602.05629), and
    it is what keeps the average unbiased when stragglers are dropped.
    """
    mat = _as_matrix(updates)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (mat.shape[0],) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per update, with a positive sum")
    out = (w / w.sum()) @ mat.astype(np.float64)
    return out.astype(mat.dtype, copy=False)


def coordinate_median(updates: np.ndarray) -> np.ndarray:
    """Coordinate-wise median (Yin et al. 2018), robust to a minority of outliers."""
    mat = _as_matrix(updates)
    return np.median(mat, axis=0).astype(mat.dtype, copy=False)


def trimmed_mean(updates: np.ndarray, beta: float) -> np.ndarray:
    """Coordinate-wise mean after cutting the ``beta`` fraction at each end."""
    mat = _as_matrix(updates)
    if not 0 <= beta < 0.5:
        raise ValueError("beta must be in [0, 0.5)")
    n = mat.shape[0]
    cut = int(np.floor(beta * n))
    ordered = np.sort(mat, axis=0)
    kept = ordered[cut : n - cut]
    return kept.mean(axis=0).astype(mat.dtype, copy=False)


def krum_scores(updates: np.ndarray, num_malicious: int) -> np.ndarray:
    """Krum score of each update: sum of squared distances to its n - f - 2 nearest peers."""
    mat = _as_matrix(updates).astype(np.float64)
    n = mat.shape[0]
    closest = max(n - num_malicious - 2, 1)
    sq = np.sum(mat**2, axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * mat @ mat.T, 0.0)
    np.fill_diagonal(dist, np.inf)
    nearest = np.sort(dist, axis=1)[:, : min(closest, n - 1)]
    return nearest.sum(axis=1) if n > 1 else np.zeros(1)


def krum(updates: np.ndarray, num_malicious: int = 0, num_to_keep: int = 1) -> np.ndarray:
    """Krum / Multi-Krum (Blanchard et al. 2017).

    ``num_to_keep == 1`` returns the single update with the lowest score; larger values
    average the ``num_to_keep`` best ones (Multi-Krum). Ties break on the lower index,
    i.e. the lower client id, because callers pass updates in sorted client order.
    """
    mat = _as_matrix(updates)
    scores = krum_scores(mat, num_malicious)
    order = np.argsort(scores, kind="stable")[: max(1, num_to_keep)]
    return mat[order].mean(axis=0).astype(mat.dtype, copy=False)


def momentum_step(
    params: np.ndarray,
    pseudo_gradient: np.ndarray,
    velocity: np.ndarray | None,
    server_lr: float,
    momentum: float,
) -> tuple[np.ndarray, np.ndarray]:
    """FedAvgM server step (Hsu et al. 2019).

    ``pseudo_gradient`` is ``params - average(client params)``. Returns the new params
    and the new velocity ``v = momentum * v + pseudo_gradient``.
    """
    v = pseudo_gradient if velocity is None else momentum * velocity + pseudo_gradient
    return params - server_lr * v, v


def adaptive_step(
    kind: str,
    params: np.ndarray,
    delta: np.ndarray,
    m: np.ndarray | None,
    v: np.ndarray | None,
    eta: float,
    beta_1: float,
    beta_2: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FedAdagrad / FedAdam / FedYogi server step (Reddi et al. 2021, Algorithm 2).

    ``delta`` is ``average(client params) - params``. ``m`` and ``v`` start at zero
    (``None``). Returns ``(new_params, m, v)``.
    """
    m_prev = np.zeros_like(delta) if m is None else m
    v_prev = np.zeros_like(delta) if v is None else v
    m_new = beta_1 * m_prev + (1 - beta_1) * delta
    d2 = delta * delta
    if kind == "adagrad":
        v_new = v_prev + d2
    elif kind == "adam":
        v_new = beta_2 * v_prev + (1 - beta_2) * d2
    elif kind == "yogi":
        v_new = v_prev - (1 - beta_2) * d2 * np.sign(v_prev - d2)
    else:
        raise ValueError(f"unknown adaptive optimiser {kind!r}")
    new = params + eta * m_new / (np.sqrt(v_new) + tau)
    return new.astype(params.dtype, copy=False), m_new, v_new


def scaffold_server_update(
    params: np.ndarray,
    control: np.ndarray,
    param_deltas: np.ndarray,
    control_deltas: np.ndarray,
    num_clients: int,
    server_lr: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """SCAFFOLD server step (Karimireddy et al. 2020, Algorithm 1, lines 16-17).

    ``x <- x + lr_g * mean(dy)``; ``c <- c + |S|/N * mean(dc)``.
    """
    dy = _as_matrix(param_deltas).mean(axis=0)
    dc = _as_matrix(control_deltas).mean(axis=0)
    s = param_deltas.shape[0]
    return params + server_lr * dy, control + (s / num_clients) * dc

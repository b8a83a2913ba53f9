"""The member side of a federation: the Dask tasks that run on a member's own executor.

These module-level functions are pickled by reference and run on a tenant's workers (as the
tenant's Unix account, the only one that can read its dataset directory). One task per wave
of a round (see :mod:`fedhub.fl.federation`, the coordinator that sends them):

====================  ==========================================================
``member_train``      load data (once per worker), train from the global weights,
                      clip (DP), keep the update; return public keys + counts
``member_share_keys`` Shamir shares of the member's secrets, encrypted per peer
``member_masked``     the member's weighted update, quantised and masked
``member_unmask``     shares that let the coordinator cancel the masks
``member_evaluate``   the new global model on the member's own test split
====================  ==========================================================

plus ``member_local_only`` (the local-only baseline). A member's data and its
secure-aggregation secrets stay in the worker process's memory, cached per run token and
round (at most ``_MEMBERS_KEPT`` runs), and never travel.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import models as _models
from .training import ClientJob, FlatModel, evaluate, to_tensors, train_client


@dataclass(frozen=True)
class MemberSpec:
    """What a member's tasks need; small, sent with every task."""

    token: str
    member_id: int
    dataset_dir: str
    model: str
    model_params: dict
    local_epochs: int
    batch_size: int
    lr: float
    seed: int
    mu: float
    clip_norm: float | None
    secagg: Any  # SecAggConfig or None


class _MemberState:
    def __init__(self, spec: MemberSpec) -> None:
        import torch

        torch.set_num_threads(1)
        arrays = _load_arrays(spec.dataset_dir)
        train, test = arrays["split"] == 0, arrays["split"] == 1
        self.train = to_tensors({"x": arrays["x"][train], "y": arrays["y"][train]})
        self.test = {"x": arrays["x"][test], "y": arrays["y"][test]}
        self.num_train = int(train.sum())
        self.fm = FlatModel(_models.get(spec.model, **spec.model_params))
        self.round: int | None = None
        self.update: np.ndarray | None = None
        self.secagg = None  # this round's SecAggMember


_MEMBERS: OrderedDict[tuple[str, int], _MemberState] = OrderedDict()
_MEMBERS_KEPT = 8


def _load_arrays(dataset_dir: str) -> dict[str, np.ndarray]:
    from fedhub.datasets.store import load_arrays

    return load_arrays(dataset_dir)


def _state(spec: MemberSpec) -> _MemberState:
    key = (spec.token, spec.member_id)
    state = _MEMBERS.get(key)
    if state is None:
        state = _MEMBERS[key] = _MemberState(spec)
        while len(_MEMBERS) > _MEMBERS_KEPT:
            _MEMBERS.popitem(last=False)
    return state


def _round_state(spec: MemberSpec, rnd: int) -> _MemberState:
    state = _MEMBERS.get((spec.token, spec.member_id))
    if state is None or state.round != rnd:
        raise RuntimeError(f"member {spec.member_id} holds no state for round {rnd} here")
    return state


def _train(state: _MemberState, spec: MemberSpec, weights, rnd: int):
    import torch

    glob = torch.from_numpy(np.asarray(weights, dtype=np.float32))
    job = ClientJob(spec.member_id, spec.local_epochs)
    return train_client(
        state.fm, state.train, glob, job, rnd=rnd, seed=spec.seed, lr=spec.lr,
        batch_size=spec.batch_size, mu=spec.mu,
    )  # fmt: skip


def member_train(spec: MemberSpec, rnd: int, weights: np.ndarray) -> dict:
    """Wave 1: train from ``weights``; keep the update here, return keys and counts."""
    t0 = time.perf_counter()
    state = _state(spec)
    result = _train(state, spec, weights, rnd)
    update = result.params.astype(np.float64) - np.asarray(weights, dtype=np.float64)
    if spec.clip_norm is not None:
        from .privacy import clip

        update = clip(update, spec.clip_norm)
    state.round, state.update, state.secagg = rnd, update, None
    out = {"examples": result.num_examples, "train_loss": result.train_loss}
    if spec.secagg is None:
        out["update"] = update
    else:
        from .secagg import SecAggMember

        state.secagg = SecAggMember(spec.member_id, spec.secagg)
        out["public_keys"] = state.secagg.advertise()
    out["client_seconds"] = time.perf_counter() - t0
    out["worker"] = _worker_address()
    return out


def _worker_address() -> str | None:
    """This worker's address: the round's later stages must run where its state is."""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # not in a Dask task
        return None


def member_share_keys(spec: MemberSpec, rnd: int, roster: dict) -> dict:
    """Wave 2: encrypted shares of this member's secrets, one per peer in ``roster``."""
    t0 = time.perf_counter()
    shares = _round_state(spec, rnd).secagg.share_keys(roster)
    return {"shares": shares, "client_seconds": time.perf_counter() - t0}


def member_masked(spec: MemberSpec, rnd: int, weight: float, shares_for_me: dict) -> dict:
    """Wave 3: this member's update times ``weight``, quantised and masked."""
    t0 = time.perf_counter()
    state = _round_state(spec, rnd)
    masked = state.secagg.masked_input(state.update * weight, shares_for_me)
    return {"masked": masked, "client_seconds": time.perf_counter() - t0}


def member_unmask(spec: MemberSpec, rnd: int, survivors: list, dropped: list) -> dict:
    """Wave 4: the shares the coordinator needs to cancel this round's masks."""
    t0 = time.perf_counter()
    state = _round_state(spec, rnd)
    response = state.secagg.unmask(survivors, dropped)
    state.update = None
    return {"unmask": response, "client_seconds": time.perf_counter() - t0}


def member_evaluate(spec: MemberSpec, weights: np.ndarray) -> dict:
    """Wave 5: loss and accuracy of ``weights`` on this member's own test split."""
    t0 = time.perf_counter()
    state = _state(spec)
    state.fm.set(np.asarray(weights, dtype=np.float32))
    loss, acc = evaluate(state.fm, state.test)
    return {
        "accuracy": acc,
        "loss": loss,
        "test_examples": len(state.test["y"]),
        "client_seconds": time.perf_counter() - t0,
    }


def member_local_only(spec: MemberSpec, rounds: int, weights: np.ndarray) -> dict:
    """Train on this member's data alone (``rounds`` × ``local_epochs`` epochs, the same
    batch orders as in the federation) and evaluate on its own test split."""
    state = _state(spec)
    w = np.asarray(weights, dtype=np.float32)
    for rnd in range(1, rounds + 1):
        w = _train(state, spec, w, rnd).params
    state.fm.set(w)
    loss, acc = evaluate(state.fm, state.test)
    return {"accuracy": acc, "loss": loss}

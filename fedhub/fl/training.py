"""Local training of one client, and the flat parameter layout shared by driver and workers.

The model's floating-point parameters and buffers live as views into one flat float32
tensor (parameters first). Loading global weights is one ``copy_``, reading a client's
result is one ``clone``, and the SGD step (with the FedProx proximal term and SCAFFOLD's
correction) is one vectorised update per batch. No DataLoader: for small tensors its
per-batch overhead is larger than the model's forward pass.

Randomness: each client's batch order comes from a generator seeded with
``(seed, round, client_id)``, so the result never depends on which worker ran it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .sampling import NeighbourSampler


def client_seed(seed: int, rnd: int, cid: int) -> int:
    """A 63-bit seed that is a pure function of (experiment seed, round, client)."""
    return int(np.random.SeedSequence([seed, rnd, cid]).generate_state(2, np.uint64)[0] >> 1)


class FlatModel:
    """A model whose float state is stored in one flat tensor.

    ``n_trainable`` is the length of the leading part that holds the trainable
    parameters; the rest are float buffers (e.g. batch-norm statistics), which are
    averaged like parameters but not stepped by SGD.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        params = [p for p in model.parameters() if p.requires_grad]
        param_ids = {id(p) for p in params}
        buffers = [
            (mod, name, b)
            for mod in model.modules()
            for name, b in mod.named_buffers(recurse=False)
            if b.is_floating_point()
        ]
        total = sum(p.numel() for p in params) + sum(b.numel() for _, _, b in buffers)
        self.n_trainable = sum(p.numel() for p in params)
        self.flat = torch.empty(total, dtype=torch.float32)
        self.grad = torch.zeros(self.n_trainable, dtype=torch.float32)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                view = self.flat[offset : offset + n].view_as(p)
                view.copy_(p.detach())
                p.data = view
                p.grad = self.grad[offset : offset + n].view_as(p)
                offset += n
            for mod, name, b in buffers:
                if id(b) in param_ids:
                    continue
                n = b.numel()
                view = self.flat[offset : offset + n].view_as(b)
                view.copy_(b)
                setattr(mod, name, view)
                offset += n
        self.params = params
        self.takes_graph = bool(getattr(model, "takes_graph", False))

    @property
    def dim(self) -> int:
        return self.flat.numel()

    def get(self) -> np.ndarray:
        return self.flat.detach().numpy().copy()

    def set(self, vector: np.ndarray | torch.Tensor) -> None:
        with torch.no_grad():
            self.flat.copy_(torch.as_tensor(vector))

    def zero_grad(self) -> None:
        # Keep the .grad views: autograd accumulates into them in place.
        self.grad.zero_()
        for p, g in zip(self.params, self._grad_views(), strict=True):
            if p.grad is None or p.grad.data_ptr() != g.data_ptr():
                p.grad = g

    def _grad_views(self):
        offset = 0
        for p in self.params:
            n = p.numel()
            yield self.grad[offset : offset + n].view_as(p)
            offset += n


@dataclass
class ClientJob:
    """What one client is asked to do in one round."""

    cid: int
    epochs: int
    extra: dict = field(default_factory=dict)


@dataclass
class ClientResult:
    """What one client sends back."""

    cid: int
    params: np.ndarray
    num_examples: int
    train_loss: float
    epochs: int
    steps: int
    extra: dict = field(default_factory=dict)


def to_tensors(client: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in client.items()}


def train_client(
    fm: FlatModel,
    data: dict[str, torch.Tensor],
    global_params: torch.Tensor,
    job: ClientJob,
    *,
    rnd: int,
    seed: int,
    lr: float,
    batch_size: int | None,
    mu: float = 0.0,
    kind: str = "tabular",
    sampling=None,
) -> ClientResult:
    """Run ``job.epochs`` epochs of minibatch SGD from ``global_params``.

    A graph client trains full-batch (one step per epoch on its whole subgraph), or, when
    ``sampling`` (a :class:`fedhub.fl.sampling.NeighbourSampling`) applies to its node count,
    on mini-batches of seed nodes with sampled neighbourhoods (one step per batch).

    The local objective is ``loss + mu/2 * ||w - w_global||^2`` (FedProx). If ``job.extra``
    holds SCAFFOLD's ``c`` and ``c_i``, each gradient is corrected by ``c - c_i`` and the
    new client control (option II) is returned in ``extra["dc"]``.
    """
    fm.set(global_params)
    model = fm.model
    model.train()
    nt = fm.n_trainable
    w = fm.flat[:nt]
    w0 = global_params[:nt]
    correction = None
    if "c" in job.extra:
        correction = torch.as_tensor(job.extra["c"][:nt] - job.extra["c_i"][:nt])
    gen = torch.Generator().manual_seed(client_seed(seed, rnd, job.cid))
    loss_sum = torch.zeros((), dtype=torch.float64)
    seen = 0
    steps = 0
    if kind == "graph":
        x, edge_index, y, mask = data["x"], data["edge_index"], data["y"], data["train_mask"]
        n = int(mask.sum())
        if sampling is not None and sampling.applies(len(y)):
            rng = np.random.default_rng(client_seed(seed, rnd, job.cid))
            batches = _sampled_batches(data, sampling, job.epochs, rng)
        else:
            batches = ((x, edge_index, mask, y[mask]) for _ in range(job.epochs))
        for xb, eb, rows, yb in batches:
            fm.zero_grad()
            loss = F.cross_entropy(model(xb, eb)[rows], yb)
            loss.backward()
            _sgd_step(w, fm.grad, w0, lr, mu, correction)
            loss_sum += loss.detach() * len(yb)
            seen += len(yb)
            steps += 1
    else:
        x, y = data["x"], data["y"]
        n = len(y)
        bs = n if not batch_size or batch_size >= n else batch_size
        for _ in range(job.epochs):
            order = torch.randperm(n, generator=gen) if bs < n else None
            for start in range(0, n, bs):
                if order is None:
                    xb, yb = x, y
                else:
                    idx = order[start : start + bs]
                    xb, yb = x[idx], y[idx]
                fm.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                _sgd_step(w, fm.grad, w0, lr, mu, correction)
                loss_sum += loss.detach() * len(yb)
                seen += len(yb)
                steps += 1
    extra = {}
    if correction is not None:
        c, c_i = job.extra["c"], job.extra["c_i"]
        delta = (global_params - fm.flat).numpy()
        new_c_i = c_i - c + delta / (max(steps, 1) * lr)
        new_c_i[nt:] = 0.0
        extra["dc"] = (new_c_i - c_i).astype(np.float32)
    return ClientResult(
        cid=job.cid,
        params=fm.get(),
        num_examples=n,
        train_loss=float(loss_sum / max(seen, 1)),
        epochs=job.epochs,
        steps=steps,
        extra=extra,
    )


def _sampled_batches(data: dict[str, torch.Tensor], sampling, epochs: int, rng):
    """Per epoch, the training nodes in a seeded random order, ``sampling.batch_nodes`` at a
    time, each batch with its sampled computation graph: ``(x, edge_index, rows, y)`` where
    ``rows`` are the seeds' rows in ``x`` (the first ones)."""
    x, y = data["x"], data["y"]
    sampler = NeighbourSampler(data["edge_index"].numpy(), len(y), sampling.fanouts)
    train_nodes = np.flatnonzero(data["train_mask"].numpy())
    for _ in range(epochs):
        order = rng.permutation(train_nodes)
        for start in range(0, len(order), sampling.batch_nodes):
            seeds = order[start : start + sampling.batch_nodes]
            nodes, edge_index = sampler.sample(seeds, rng)
            rows = slice(0, len(seeds))
            yield x[nodes], torch.from_numpy(edge_index), rows, y[seeds]


def _sgd_step(w, grad, w0, lr, mu, correction) -> None:
    with torch.no_grad():
        if mu:
            grad.add_(w - w0, alpha=mu)
        if correction is not None:
            grad.add_(correction)
        w.add_(grad, alpha=-lr)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch threads, then restore the caller's setting.

    The driver evaluates while its workers may still be busy; a multi-threaded OpenMP
    region there competes with them for the same cores, and on a loaded 2-core machine
    one descheduled thread stalls the whole region (12 ms instead of 0.3 ms for a small
    matmul, measured).
    """
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


def evaluate(fm: FlatModel, data, kind: str = "tabular", chunk: int = 65536) -> tuple[float, float]:
    """Loss and accuracy of the current weights on a pooled test set (or client graphs)."""
    with torch.no_grad(), torch_threads(1):
        return _evaluate(fm, data, kind, chunk)


def _evaluate(fm: FlatModel, data, kind: str, chunk: int) -> tuple[float, float]:
    model = fm.model
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    if kind == "graph":
        for client in data:
            t = to_tensors(client)
            out = model(t["x"], t["edge_index"])[t["test_mask"]]
            yy = t["y"][t["test_mask"]]
            loss_sum += float(F.cross_entropy(out, yy, reduction="sum"))
            correct += int((out.argmax(1) == yy).sum())
            total += len(yy)
    else:
        x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
        for start in range(0, len(y), chunk):
            out = model(x[start : start + chunk])
            yy = y[start : start + chunk]
            loss_sum += float(F.cross_entropy(out, yy, reduction="sum"))
            correct += int((out.argmax(1) == yy).sum())
            total += len(yy)
    model.train()
    return loss_sum / max(total, 1), correct / max(total, 1)

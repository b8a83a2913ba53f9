"""Mini-batch training of large client subgraphs: GraphSAGE fan-out neighbour sampling.

torch-geometric's ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse``, which have no
wheels for this torch; this is the same sampling on NumPy CSR arrays. Kept apart from
:mod:`fedhub.fl.graphs` (which trains through :mod:`fedhub.fl.training`) so that the
training loop can use it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NeighbourSampling:
    """Mini-batch training for clients whose subgraph has more than ``minibatch_nodes``
    nodes (0: never): each step trains on ``batch_nodes`` seed nodes and their sampled
    computation graph (GraphSAGE fan-outs, ``fanouts[k]`` neighbours at hop ``k + 1``)."""

    minibatch_nodes: int = 0
    batch_nodes: int = 256
    fanouts: tuple[int, ...] = (10, 5)

    def applies(self, num_nodes: int) -> bool:
        return 0 < self.minibatch_nodes < num_nodes


class NeighbourSampler:
    """GraphSAGE-style fan-out sampling on NumPy CSR arrays (what torch-geometric's
    ``NeighborLoader`` does, without the ``pyg-lib``/``torch-sparse`` it needs).

    The CSR is keyed by target node: ``sources[indptr[v]:indptr[v + 1]]`` are the nodes with
    an edge ``(u, v)``, whose messages reach ``v``. :meth:`sample` takes the seed nodes, draws
    up to ``fanouts[0]`` of each seed's neighbours without replacement, then up to
    ``fanouts[1]`` of each node the first hop added, and so on.
    """

    def __init__(self, edge_index: np.ndarray, num_nodes: int, fanouts=(10, 5)) -> None:
        src, dst = np.asarray(edge_index)
        order = np.argsort(dst, kind="stable")
        self.sources = src[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=num_nodes))])
        self.fanouts = tuple(int(f) for f in fanouts)
        self.num_nodes = num_nodes

    def sample(self, seeds: np.ndarray, rng: np.random.Generator):
        """``(nodes, edge_index)``: the global ids of the computation graph's nodes, seeds
        first in the given order, and its edges over positions in ``nodes`` (source row,
        target row)."""
        seeds = np.asarray(seeds, dtype=np.int64)
        local = np.full(self.num_nodes, -1, dtype=np.int64)
        local[seeds] = np.arange(len(seeds))
        nodes, frontier, edges = [seeds], seeds, []
        count = len(seeds)
        for fanout in self.fanouts:
            src, dst = self._hop(frontier, fanout, rng)
            fresh = src[local[src] < 0]
            unique, first = np.unique(fresh, return_index=True)
            frontier = unique[np.argsort(first)]  # in order of first appearance
            local[frontier] = count + np.arange(len(frontier))
            count += len(frontier)
            nodes.append(frontier)
            edges.append(np.stack([local[src], local[dst]]))
        return np.concatenate(nodes), np.concatenate(edges, axis=1)

    def _hop(self, frontier: np.ndarray, fanout: int, rng: np.random.Generator):
        """Up to ``fanout`` in-neighbours of each frontier node, without replacement (the
        ones with the ``fanout`` smallest uniform keys): edges as (sources, targets)."""
        start = self.indptr[frontier]
        degree = self.indptr[frontier + 1] - start
        owner = np.repeat(np.arange(len(frontier)), degree)
        rank = np.arange(int(degree.sum())) - np.repeat(np.cumsum(degree) - degree, degree)
        slot = np.repeat(start, degree) + rank
        order = np.lexsort((rng.random(len(slot)), owner))  # owners stay grouped, keys shuffled
        picked = order[rank < fanout]  # rank is also the position within each sorted group
        return self.sources[slot[picked]], frontier[owner[picked]]

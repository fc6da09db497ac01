"""Grouping the units of a trained dense layer into blocks of units that fire together.

MoEfication's first step (Zhang et al. 2022): units whose activations rise and fall together over the
training inputs are put in the same block, so that for one input few blocks hold most of the
activity. Here each unit's activity profile (|h| over a sample of inputs, scaled to unit length) is a
point, and the points are clustered by k-means with every cluster holding exactly `block_size` units
(blocks of a layer have one size). Moving the units into block order is exact: permuting a layer's
rows and the next layer's columns the same way leaves the network's function unchanged.
"""

from __future__ import annotations

import numpy as np
import torch


def activity_profiles(h: np.ndarray) -> np.ndarray:
    """(n_examples, width) activations -> (width, n_examples): each unit's |h|, scaled to unit length
    (a unit that never fires keeps its zero profile)."""
    profiles = np.abs(h).T.astype(np.float64)
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    return profiles / np.where(norms > 0, norms, 1.0)


def balanced_assignment(distance: np.ndarray, size: int) -> np.ndarray:
    """(n_points, n_clusters) distances -> each point's cluster, every cluster taking exactly `size`
    points: the closest (point, cluster) pairs are taken first while the cluster has room."""
    n_points, n_clusters = distance.shape
    if n_points != n_clusters * size:
        raise ValueError(f"{n_points} points do not fill {n_clusters} clusters of {size}")
    cluster = np.full(n_points, -1)
    room = np.full(n_clusters, size)
    for flat in np.argsort(distance, axis=None, kind="stable"):
        point, c = divmod(int(flat), n_clusters)
        if cluster[point] < 0 and room[c] > 0:
            cluster[point], room[c] = c, room[c] - 1
    return cluster


def balanced_clusters(profiles: np.ndarray, size: int, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """k-means with equal clusters of `size` points: (n_points, dim) -> (n_points // size, size), the
    points of each cluster, in increasing order (clusters ordered by their first point)."""
    rng = np.random.default_rng(seed)
    n_clusters = len(profiles) // size
    centroids = profiles[rng.choice(len(profiles), n_clusters, replace=False)]
    cluster = None
    for _ in range(iterations):
        distance = (profiles**2).sum(1)[:, None] - 2 * profiles @ centroids.T + (centroids**2).sum(1)[None, :]
        new = balanced_assignment(distance, size)
        if cluster is not None and (new == cluster).all():
            break
        cluster = new
        centroids = np.stack([profiles[cluster == c].mean(axis=0) for c in range(n_clusters)])
    groups = [np.flatnonzero(cluster == c) for c in range(n_clusters)]
    return np.stack(sorted(groups, key=lambda members: members[0]))


@torch.no_grad()
def permute_units(state: dict[str, torch.Tensor], layer: int, order: np.ndarray, next_name: str) -> None:
    """Put hidden layer `layer`'s units in `order` (new unit i is old unit order[i]), in place in a
    CondNet state_dict: its weight rows and biases, and the columns of the layer it feeds (`next_name`,
    "hidden.{layer + 1}" or "output"). The network computes the same function afterwards."""
    index = torch.as_tensor(order, dtype=torch.long)
    for name in (f"hidden.{layer}.weight", f"hidden.{layer}.bias"):
        state[name] = state[name][index].clone()
    state[f"{next_name}.weight"] = state[f"{next_name}.weight"][:, index].clone()

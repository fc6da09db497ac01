"""`condnet experts RUN`: how a gated layer's router splits the data, and what its experts (blocks) know.

For a run whose last hidden layer is gated (a mixture of experts, the input layer of a one-layer net
included), on one split (validation by default; threshold mode, or sample mode for gates without one):

- shares: the fraction of examples that compute each block; their entropy in bits (log2 n_blocks when
  the load is even), and the information the choice carries about the label, I(block; label) in bits
  (the block drawn uniformly among an example's active ones; log2 10 = 3.32 when it names the class);
- the error of the router's choice against three other choices of the same number of blocks per
  example, each over the same trained experts: the router's choice with equal weights, a uniformly
  random choice, and the label-aware oracle (the choice that gets the example right if any does: every
  set of blocks enumerated when there are at most ORACLE_EXACT_SETS, else built greedily by the
  true label's likelihood). Choices other than the router's weigh their blocks equally (1/k for gates
  whose values sum to 1, 1 for gates that scale by the mask), since the router's gate values exist for
  its own choice only;
- per expert: its share, the model's error on it, and the expert alone on its own share and on
  everyone else's: an expert much better on its share than elsewhere has specialised. Alone, it weighs
  as the router weighs it on average: its mean gate value on its share (1 for gates that scale by the
  mask), since the output bias makes the weight matter; weight 1 would misjudge a mixing gate's expert.

Because the layer is the last hidden one, the logits are the output bias plus one term per block,
logits = b + sum_b g_b C_b(x), with C_b = W_out[:, block b] f(W_b h + b_b): every choice is evaluated
from the C_b computed once. The router's own logits are recomputed this way and checked against the
model's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from condnet.errors import CondnetError

ORACLE_EXACT_SETS = 50_000  # enumerate every set of blocks up to this many sets per example
CHUNK = 2_000  # examples per chunk (bounds the memory of the per-block outputs)
SETS_CHUNK = 32  # sets of blocks evaluated at once by the exact oracle (bounds its memory)


@dataclass
class Expert:
    block: int
    share: float  # fraction of examples computing it
    error: float | None  # the model's error on those examples (None: no example)
    alone_own: float | None  # the expert alone (at its mean gate value on its share), error on that share
    alone_others: float | None  # the expert alone, error on the other examples
    top_class: int | None  # the most frequent label in its share
    top_class_fraction: float | None


@dataclass
class Routing:
    layer: int
    gate: str
    split: str
    mode: str
    examples: int
    n_blocks: int
    blocks_per_example: float
    share_entropy_bits: float
    max_entropy_bits: float  # log2 n_blocks
    label_information_bits: float  # I(block; label)
    label_entropy_bits: float  # H(label): the information's ceiling
    error_router: float
    error_router_equal: float  # the router's blocks, weighed equally
    error_random: float
    error_oracle: float
    oracle: str  # "exact" or "greedy"
    experts: list[Expert]


def share_entropy_bits(mask: torch.Tensor) -> float:
    """Entropy of the load: each example spreads one unit over its active blocks."""
    per_example = mask / mask.sum(dim=1, keepdim=True).clamp_min(1)
    load = per_example.sum(dim=0) / per_example.sum()
    return _entropy(load)


def label_information_bits(mask: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    """I(block; label), the block drawn uniformly among an example's active blocks."""
    per_example = mask / mask.sum(dim=1, keepdim=True).clamp_min(1)
    joint = F.one_hot(labels, n_classes).to(mask.dtype).T @ per_example  # (classes, blocks)
    joint = joint / joint.sum()
    return _entropy(joint.sum(dim=0)) + _entropy(joint.sum(dim=1)) - _entropy(joint.flatten())


def _entropy(p: torch.Tensor) -> float:
    p = p[p > 0]
    return max(0.0, float(-(p * torch.log2(p)).sum()))  # not -0.0 for a single outcome


@torch.no_grad()
def routing_report(model, x: torch.Tensor, y: torch.Tensor, split: str = "valid", seed: int = 0) -> Routing:
    """The report of the model's last hidden layer on (x, y); CondnetError when that layer is not gated."""
    layer = len(model.hidden) - 1
    gate = model.policy(layer)
    if gate is None:
        raise CondnetError(
            "experts: the last hidden layer is dense; the report is for a gated last hidden layer "
            "(a one-layer net routed on its input, or model.gated ending in true)"
        )
    mode = "threshold" if model.cfg.has_threshold_mode else "sample"
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    logits, terms, masks, values = [], [], [], []
    for start in range(0, len(x), CHUNK):
        out = model(x[start : start + CHUNK], mode=mode, generator=generator)
        trace = out.layers[layer]
        logits.append(out.logits)
        terms.append(_block_terms(model, x[start : start + CHUNK], out.layers))
        masks.append(trace.mask)
        values.append(trace.mask if trace.gates is None else trace.gates)
    logits, terms, mask, values = (torch.cat(t) for t in (logits, terms, masks, values))
    bias = model.output.bias
    if not torch.allclose((values[:, :, None] * terms).sum(dim=1) + bias, logits, rtol=1e-4, atol=1e-4):
        raise AssertionError("the per-block terms do not add up to the model's logits")

    counts = mask.sum(dim=1).long()
    mixes = gate.spec.scales
    random = _random_choice(counts, mask.shape[1], torch.Generator().manual_seed(seed))
    oracle_error, oracle = _oracle_error(terms, bias, y, counts, mixes)
    wrong = logits.argmax(dim=1) != y
    experts = [
        _expert(b, mask[:, b] > 0, wrong, values[:, b], terms[:, b], bias, y) for b in range(mask.shape[1])
    ]
    n_classes = terms.shape[2]
    return Routing(
        layer=layer, gate=gate.spec.name, split=split, mode=mode, examples=len(y), n_blocks=mask.shape[1],
        blocks_per_example=float(counts.float().mean()),
        share_entropy_bits=share_entropy_bits(mask), max_entropy_bits=math.log2(mask.shape[1]),
        label_information_bits=label_information_bits(mask, y, n_classes),
        label_entropy_bits=_entropy(torch.bincount(y, minlength=n_classes).float() / len(y)),
        error_router=float(wrong.float().mean()),
        error_router_equal=_error(_mix(terms, mask, mixes) + bias, y),
        error_random=_error(_mix(terms, random, mixes) + bias, y),
        error_oracle=oracle_error, oracle=oracle, experts=experts,
    )  # fmt: skip


def _block_terms(model, x: torch.Tensor, traces) -> torch.Tensor:
    """C_b for every block of the last hidden layer, (batch, blocks, classes), its input computed as the
    model did (earlier layers scaled by their own decisions)."""
    h = x
    last = len(model.hidden) - 1
    for index in range(last):
        t = traces[index]
        scale = t.mask if t.gates is None else t.gates
        h = model.activation(model.hidden[index](h)) * scale.repeat_interleave(
            model.block_sizes[index], dim=1
        )
    units = model.activation(model.hidden[last](h))
    size = model.block_sizes[last]
    w = model.output.weight.reshape(model.n_classes, -1, size)  # (classes, blocks, size)
    return torch.einsum("nbs,cbs->nbc", units.reshape(len(x), -1, size), w)


def _weight(k, mixes: bool):
    """The weight of each of k chosen blocks in a choice that is not the router's: 1/k when the gate's
    values sum to 1 (it mixes its blocks), 1 when it scales by the mask."""
    return 1.0 / k.clamp_min(1) if mixes else torch.ones_like(k)


def _mix(terms, chosen, mixes: bool) -> torch.Tensor:
    """The logits' block part for 0/1 choices (n, blocks), each block weighed by _weight."""
    scale = chosen * _weight(chosen.sum(dim=1, keepdim=True), mixes)
    return (scale[:, :, None] * terms).sum(dim=1)


def _error(logits, y) -> float:
    return float((logits.argmax(dim=1) != y).float().mean())


def _random_choice(counts, n_blocks: int, generator) -> torch.Tensor:
    """Uniformly random sets of counts[i] blocks."""
    order = torch.rand(len(counts), n_blocks, generator=generator).argsort(dim=1)
    rank = order.argsort(dim=1)
    return (rank < counts[:, None]).float()


def _oracle_error(terms, bias, y, counts, mixes: bool) -> tuple[float, str]:
    """The label-aware oracle's error with the same number of blocks per example as the router."""
    n, n_blocks, _ = terms.shape
    sizes = [int(k) for k in counts.unique()]
    if all(math.comb(n_blocks, k) <= ORACLE_EXACT_SETS for k in sizes):
        right = torch.zeros(n, dtype=torch.bool)
        for k in sizes:
            rows = (counts == k).nonzero().flatten()
            sets = torch.tensor(list(itertools.combinations(range(n_blocks), k)), dtype=torch.long)
            weight = float(_weight(torch.tensor(float(k)), mixes))
            mine = terms[rows]
            for start in range(0, len(sets), SETS_CHUNK):  # (rows, sets, k, classes) a chunk at a time
                logits = mine[:, sets[start : start + SETS_CHUNK]].sum(dim=2) * weight + bias
                right[rows] |= (logits.argmax(dim=2) == y[rows, None]).any(dim=1)
        return float(1 - right.float().mean()), "exact"
    chosen = torch.zeros(n, n_blocks)
    for step in range(1, int(counts.max()) + 1):
        rows = (counts >= step).nonzero().flatten()
        # each candidate block added to the set so far: (n, blocks, classes)
        logits = ((terms * chosen[:, :, None]).sum(dim=1, keepdim=True) + terms) * float(
            _weight(torch.tensor(float(step)), mixes)) + bias  # fmt: skip
        nll = -torch.log_softmax(logits, dim=2).gather(2, y[:, None, None].expand(-1, n_blocks, 1))[..., 0]
        nll[chosen > 0] = math.inf
        chosen[rows, nll.argmin(dim=1)[rows]] = 1.0
    return _error(_mix(terms, chosen, mixes) + bias, y), "greedy"


def _expert(block: int, own: torch.Tensor, wrong, values, term, bias, y) -> Expert:
    weight = values[own].mean() if own.any() else 1.0
    alone_wrong = (weight * term + bias).argmax(dim=1) != y

    def rate(v, where):
        return float(v[where].float().mean()) if where.any() else None

    top = torch.bincount(y[own]).argmax().item() if own.any() else None
    return Expert(
        block=block, share=float(own.float().mean()), error=rate(wrong, own),
        alone_own=rate(alone_wrong, own), alone_others=rate(alone_wrong, ~own), top_class=top,
        top_class_fraction=float((y[own] == top).float().mean()) if own.any() else None,
    )  # fmt: skip


def run_report(run_dir, split: str = "valid") -> Routing:
    """The report of a finished run on its validation (default) or test split."""
    from condnet.experiment import load_run

    if split not in ("valid", "test"):
        raise CondnetError(f"--split must be valid or test, got {split!r}")
    cfg, model, splits = load_run(run_dir)
    x, y = (splits.x_valid, splits.y_valid) if split == "valid" else (splits.x_test, splits.y_test)
    return routing_report(model, x, y, split, seed=cfg.seed)


def markdown(name: str, r: Routing) -> str:
    """The report as a summary line and a table of experts."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    lines = [
        f"{name}: layer {r.layer}, {r.gate} over {r.n_blocks} blocks, "
        f"{r.blocks_per_example:.2f} per example; {r.split} split ({r.examples} examples, {r.mode} mode)",
        f"- shares' entropy {r.share_entropy_bits:.2f} of {r.max_entropy_bits:.2f} bits; "
        f"I(block; label) {r.label_information_bits:.2f} of {r.label_entropy_bits:.2f} bits",
        f"- error %: router {pct(r.error_router)}, "
        f"router's blocks equally weighed {pct(r.error_router_equal)}, "
        f"random blocks {pct(r.error_random)}, label-aware oracle ({r.oracle}) {pct(r.error_oracle)}",
        "",
        "| block | share % | error on it % | alone: own share % | alone: others % | top class (% of share) |",
        "|---|---|---|---|---|---|",
    ]
    for e in r.experts:
        top = "-" if e.top_class is None else f"{e.top_class} ({pct(e.top_class_fraction)})"
        lines.append(f"| {e.block} | {pct(e.share)} | {pct(e.error)} | {pct(e.alone_own)} | "
                     f"{pct(e.alone_others)} | {top} |")  # fmt: skip
    return "\n".join(lines)

"""The gates as PyTorch modules: one per hidden layer of a CondNet, one file per gate kind.

Each gate is registered under its name in `condnet.gates` (the torch-free half: settings, checkpoint
tensors, engine lowering) and owns, for its layer:

    scores and decision   decide(s, how) -> LayerTrace(sigma, mask, gates)
                          s: (batch, n_in) the layer's input (detached unless model.router_detach =
                          false); `how` says the mode (sample / threshold), the caller's masks, the
                          estimator's draw (training), the soft mixture (training) and whether to
                          fit the gate's data statistics first (once, before training)
    gate values           trace.gates: what each computed block's output is scaled by (None: the mask)
    auxiliary losses      add_losses(loss, trace, train_cfg, lambda_s) -> loss + its terms
    parameters            its nn.Parameters (Z, d), under the checkpoint names of its GateSpec

A new gate is a module here whose class has the spec's `name` and is decorated with `register`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from condnet import gates as specs


@dataclass
class LayerTrace:
    """What one hidden layer decided for a batch."""

    sigma: torch.Tensor | None  # (batch, n_blocks) the gate's probabilities (a router's: see its gate);
    #                             None for a dense layer
    mask: torch.Tensor  # (batch, n_blocks) in {0., 1.}: which blocks are computed (relaxed: in (0, 1))
    gates: torch.Tensor | None = None  # routers: what each computed block's output is scaled by; 0 (with
    #                                    no gradient) wherever mask is 0, so inactive blocks are skipped


@dataclass
class How:
    """How the gates of one forward pass decide (the same for every layer)."""

    mode: str = "sample"  # sample | threshold
    generator: torch.Generator | None = None  # sample mode's draws
    draw: object = None  # the estimator (condnet.train.estimators) that forms sample-mode masks; None: hard
    temperature: float = 1.0  # of a relaxed draw
    soft: bool = False  # training's soft mixture, for the routers that have one (tree)
    fit: bool = False  # gates fitted to data (balanced_hash) set their statistics from this batch first


class Gate(nn.Module):
    """Base class: `spec` is the layer's condnet.gates.GateSpec."""

    name = ""
    fitted = False  # whether it has data statistics that CondNet.fit_gates sets before training

    def __init__(self, spec: specs.GateSpec):
        super().__init__()
        self.spec = spec

    def decide(self, s: torch.Tensor, how: How, given: torch.Tensor | None) -> LayerTrace:
        """The layer's decision for a batch; `given`: the caller's (batch, n_blocks) 0/1 mask, or None."""
        raise NotImplementedError

    def add_losses(self, loss: torch.Tensor, trace: LayerTrace, t, lambda_s: float) -> torch.Tensor:
        """loss plus this gate's auxiliary terms (t: the TrainConfig; lambda_s: after its warm-up)."""
        return loss

    def extra_repr(self) -> str:
        layer = self.spec.layer
        return f"{layer.n_blocks} blocks of {layer.block_size}"


def hard_draw(sigma: torch.Tensor, noise: torch.Tensor, temperature: float) -> torch.Tensor:
    """u_j = [noise_j < sigma_j]: a Bernoulli(sigma) draw that carries no gradient."""
    return (noise < sigma.detach()).to(sigma.dtype)


_REGISTRY: dict[str, type[Gate]] = {}


def register(cls: type[Gate]) -> type[Gate]:
    _REGISTRY[cls.name] = cls
    return cls


def make_gate(spec: specs.GateSpec) -> Gate:
    """The PyTorch module of a layer's gate."""
    specs.import_modules(__name__)
    if spec.name not in _REGISTRY:
        raise NotImplementedError(f"gate {spec.name!r} has a spec (condnet.gates) but no module here")
    return _REGISTRY[spec.name](spec)


def xavier_scores(n_rows: int, n_in: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Z (n_rows, n_in) Glorot-uniform and d (n_rows,) zero: the learned gates' score parameters."""
    z = nn.Parameter(torch.empty(n_rows, n_in))
    nn.init.xavier_uniform_(z)
    return z, nn.Parameter(torch.zeros(n_rows))


def load_balance(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A router's load-balancing loss (Switch Transformer): n_blocks * sum_j f_j P_j, where f_j is the
    fraction of the batch's block assignments that went to block j (no gradient) and P_j the mean
    router probability of block j. It is 1 when both are uniform and grows as the router favours a
    few blocks; its gradient reaches the router through P."""
    n_blocks = probs.shape[1]
    assigned = mask.detach() / mask.detach().sum().clamp(min=1)
    return n_blocks * (assigned.sum(dim=0) * probs.mean(dim=0)).sum()

"""CondNet: a fully connected network whose hidden layers are computed block by block, on demand.

Paper section 2 and eq. 1. Hidden layer l has n_blocks[l] blocks of block_size[l] units:

    sigma_l = policy_l(h_{l-1})                    (batch, n_blocks[l])
    u_l     ~ Bernoulli(sigma_l)                    one draw per block and example
    h_l     = f(W_l h_{l-1} + b_l) * repeat(u_l)    an inactive block outputs exactly 0

h_0 is the input, and since h_{l-1} is already masked, W_l (h_{l-1} * u_{l-1}) = W_l h_{l-1}.
The output layer (softmax over classes) is never masked.

policy_l is the layer's gate (condnet.nn.gates): the paper's Bernoulli policy, or a router that
computes a fixed number of blocks and scales them by gate values (top-k, tree, ...). The same class
gives the two baselines, on the same code path:
- kind "nn": dense (every layer's gate is "dense": every block on), with optional unit dropout;
- kind "bdnn": block dropout with a uniform random policy at rate tau.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from condnet import gates as gate_specs
from condnet.checkpoint import Checkpoint
from condnet.config import MODES, ModelConfig
from condnet.limits import check_model_fits
from condnet.nn import active_blocks
from condnet.nn.gates import Gate, How, LayerTrace, make_gate
from condnet.nn.macs import active_macs

_REAL = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
         torch.int32, torch.int64, torch.bool}  # fmt: skip


@dataclass
class Output:
    logits: torch.Tensor  # (batch, n_classes)
    layers: list[LayerTrace]


class CondNet(nn.Module):
    """Block-gated MLP with a gate per hidden layer (see the module docstring for the equations).

    forward(x: (batch, input_dim), mode="sample" | "threshold", generator=None, masks=None) -> Output
    - sample: u ~ Bernoulli(sigma) (the paper, at train and test time), drawn from `generator`;
    - threshold: u = [sigma > 0.5], deterministic (routers decide alike in both modes);
    - masks: one (batch, n_blocks) tensor of 0s and 1s per hidden layer, replacing the gates' choice
      (mode is then ignored).
    - estimator (sample mode, learned policies; for training): a condnet.train.estimators estimator,
      whose `draw` forms the masks from sigma and uniform noise (None: hard draws without gradient).
    - soft_tree (routers that have a soft mixture, the tree; for training): compute every leaf block,
      each scaled by its path probability, instead of the one leaf at the end of the hard path.
    x may be any real dtype (converted to the weights'); NaN or infinite inputs are refused, as by the engine.

    Each hidden layer's gate (condnet.nn.gates, chosen by condnet.gates.gate_of) is `policies[l]`;
    `policy(l)` is None for a dense layer.
    """

    def __init__(self, input_dim: int, n_classes: int, cfg: ModelConfig):
        super().__init__()
        check_model_fits(cfg, input_dim, n_classes)  # before a weight is allocated
        self.cfg, self.input_dim, self.n_classes = cfg, input_dim, n_classes
        self.block_sizes = list(cfg.block_size)
        self.n_blocks = [w // b for w, b in zip(cfg.widths, cfg.block_size, strict=True)]
        dims = [input_dim, *cfg.widths]
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:], strict=True))
        self.output = nn.Linear(dims[-1], n_classes)
        self.view = gate_specs.router_view(cfg, input_dim)  # what the gates read (model.router_input)
        # a dense layer's gate has no parameters, so a dense net's state_dict holds no policies.*
        self.policies = nn.ModuleList(make_gate(spec) for spec in gate_specs.gates_of(cfg, input_dim))
        self.activation = torch.tanh if cfg.activation == "tanh" else torch.relu
        for layer in [*self.hidden, self.output]:  # paper section 4.1: Glorot-uniform, zero biases
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        # a "projR" view's map (checkpoint names gates.PROJECTION.*), created last: the other weights
        # draw what they drew without it
        self.router_projection = None
        if self.view.projected:
            self.router_projection = nn.Linear(input_dim, self.view.projected)
            nn.init.xavier_uniform_(self.router_projection.weight)
            nn.init.zeros_(self.router_projection.bias)

    def to_checkpoint(self) -> Checkpoint:
        """The model's weights as float32 numpy arrays (copies), with what is needed to rebuild it."""
        tensors = {k: v.detach().to(torch.float32).cpu().numpy().copy() for k, v in self.state_dict().items()}
        return Checkpoint(self.input_dim, self.n_classes, self.cfg, tensors)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> CondNet:
        """The model a (verified) Checkpoint describes, with its weights."""
        model = cls(checkpoint.input_dim, checkpoint.n_classes, checkpoint.model)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in checkpoint.tensors.items()})
        return model

    def policy(self, layer: int) -> Gate | None:
        """The gate of a hidden layer, None for a dense layer."""
        gate = self.policies[layer]
        return None if gate.spec.name == "dense" else gate

    @property
    def policy_rows(self) -> list[int]:
        """Per hidden layer: the gate's dot products per example (its multiply-adds are this times the
        active inputs): n_blocks for a learned policy or top-k router, the depth for a tree, 0 for a
        dense layer or a uniform policy."""
        return [gate.spec.score_rows for gate in self.policies]

    def network_parameters(self) -> list[nn.Parameter]:
        """Theta_NN: the weights and biases of the hidden and output layers."""
        return [p for layer in [*self.hidden, self.output] for p in layer.parameters()]

    def policy_parameters(self, layer: int) -> list[nn.Parameter]:
        """Theta_pi of one hidden layer: its gate's parameters ({Z, d}; none for dense and bdNN layers)."""
        return list(self.policies[layer].parameters())

    def view_parameters(self) -> list[nn.Parameter]:
        """The trained parameters of what every gate reads: a "projR" view's projection when some gate
        learns (a hash router's projection stays as drawn, like its planes: weight decay alone would
        shrink it under the fitted offsets), else none."""
        if self.router_projection is None or not any(gate.spec.learned for gate in self.policies):
            return []
        return list(self.router_projection.parameters())

    @property
    def view_weights(self) -> int:
        """Weights read once per example to compute the view (a projection's; pooling reads none)."""
        projection = self.router_projection
        return 0 if projection is None else projection.weight.numel() + projection.bias.numel()

    def forward(
        self,
        x: torch.Tensor,
        mode: str = "sample",
        generator: torch.Generator | None = None,
        masks: list[torch.Tensor] | None = None,
        estimator=None,
        temperature: float = 1.0,
        soft_tree: bool = False,
    ) -> Output:
        x = self._checked_input(x)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if masks is not None and len(masks) != len(self.hidden):
            raise ValueError(
                f"masks must hold one tensor per hidden layer ({len(self.hidden)}), got {len(masks)}"
            )
        return self._run(x, How(mode, generator, estimator, temperature, soft_tree), masks)

    def fit_gates(self, x: torch.Tensor) -> None:
        """Set the data statistics of the gates fitted to data (balanced_hash's offsets) from inputs x,
        layer by layer, each layer's fitted decisions feeding the next (threshold mode, no dropout);
        nothing for the other gates. Called once before training."""
        if not any(gate.fitted for gate in self.policies):
            return
        training = self.training
        self.eval()
        with torch.no_grad():
            self._run(self._checked_input(x), How("threshold", fit=True), None)
        self.train(training)

    def _run(self, x: torch.Tensor, how: How, masks) -> Output:
        view = self.router_view(x)
        h, trace = x, []
        for index, (layer, gate) in enumerate(zip(self.hidden, self.policies, strict=True)):
            # By default the gate reads h detached: its parameters are {Z, d} only, and no policy loss
            # reaches W (model.router_detach = false lets the task loss train W through the router too).
            # A view reads only x (and a projection's own weights, which the gates' losses train).
            s = view if view is not None else (h.detach() if self.cfg.router_detach else h)
            decided = gate.decide(s, how, self._given_mask(index, h, masks))
            size = self.block_sizes[index]
            dropout = self.cfg.dropout if self.training else 0.0  # unit dropout, dense and gated layers alike
            if decided.mask is None:  # a dense layer
                out = self.activation(layer(h))
                decided.mask = torch.ones(x.shape[0], self.n_blocks[index], dtype=x.dtype, device=x.device)
            else:
                scale = decided.mask if decided.gates is None else decided.gates
                if active_blocks.pays(decided.mask, h.shape[1], size):
                    args = (h, layer, self.activation, decided.mask, scale, size, dropout)
                    out, dropout = active_blocks.active_blocks(*args), 0.0  # dropped: the active units only
                else:
                    out = self.activation(layer(h)) * scale.repeat_interleave(size, dim=1)
            if dropout > 0:
                out = F.dropout(out, dropout)
            trace.append(decided)
            h = out
        return Output(self.output(h), trace)

    def router_view(self, x: torch.Tensor) -> torch.Tensor | None:
        """What every gate reads, (batch, view size), when it is not the layer's own input (None)."""
        v = self.view
        if v.reads_layer:
            return None
        if v.pooled:
            images = x.reshape(len(x), v.channels, v.side, v.side)
            return F.avg_pool2d(images, v.side // v.pooled).flatten(1)
        if v.projected:
            return self.router_projection(x)
        return x  # the network's input

    @property
    def router_inputs(self) -> list[int | None]:
        """Per hidden layer, the fixed number of values its gate's scores read, or None when they read
        the layer's active inputs (model.router_input = layer)."""
        if self.view.reads_layer:
            return [None] * len(self.hidden)
        return [gate.spec.layer.n_in for gate in self.policies]

    def macs(self, masks: list[torch.Tensor]) -> torch.Tensor:
        """Multiply-adds per example, (batch,), of computing only the active blocks (gates included;
        a pooled view costs one add per input, a projection one multiply-add per weight)."""
        return active_macs(self.input_dim, self.block_sizes, self.n_classes, masks, self.policy_rows,
                           self.router_inputs, self.view.macs(self.input_dim))  # fmt: skip

    def _checked_input(self, x) -> torch.Tensor:
        """x as the weights' dtype; the inputs the engine refuses are refused here too (same messages)."""
        x = torch.as_tensor(x)
        if x.is_complex() or x.dtype not in _REAL:
            raise ValueError(f"expected a real-valued (float) input, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected input of shape (batch, {self.input_dim}), got {tuple(x.shape)}")
        x = x.to(self.output.weight.dtype)
        if not torch.isfinite(x).all():
            raise ValueError("the input contains NaN, infinite or float32-overflowing values")
        return x

    def _given_mask(self, index, h, masks) -> torch.Tensor | None:
        if masks is None:
            return None
        mask = torch.as_tensor(masks[index])
        expected = (h.shape[0], self.n_blocks[index])
        if mask.shape != expected:
            raise ValueError(f"masks[{index}] must have shape {expected}, got {tuple(mask.shape)}")
        if ((mask != 0) & (mask != 1)).any():
            raise ValueError(f"masks[{index}] must hold only 0 and 1 (a block is on or off)")
        return mask.to(h.dtype)

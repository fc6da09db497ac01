"""CondNet: a fully connected network whose hidden layers are computed block by block, on demand.

Paper section 2 and eq. 1. Hidden layer l has n_blocks[l] blocks of block_size[l] units:

    sigma_l = policy_l(h_{l-1})                    (batch, n_blocks[l])
    u_l     ~ Bernoulli(sigma_l)                    one draw per block and example
    h_l     = f(W_l h_{l-1} + b_l) * repeat(u_l)    an inactive block outputs exactly 0

h_0 is the input, and since h_{l-1} is already masked, W_l (h_{l-1} * u_{l-1}) = W_l h_{l-1}.
The output layer (softmax over classes) is never masked.

The same class gives the two baselines, on the same code path:
- kind "nn": dense (no policy, every block on), with optional unit dropout during training;
- kind "bdnn": block dropout with a uniform random policy at rate tau.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from condnet.config import MODES, ModelConfig
from condnet.nn.policy import BlockPolicy, NoPolicy, UniformPolicy
from condnet.nn.router import (
    TopKRouter,
    TreeRouter,
    gate_values,
    leaf_probabilities,
    top_k_mask,
    tree_path_mask,
)

_REAL = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
         torch.int32, torch.int64, torch.bool}  # fmt: skip


@dataclass
class LayerTrace:
    """What one hidden layer decided for a batch."""

    sigma: torch.Tensor | None  # (batch, n_blocks) probabilities (top-k: the router's softmax); None: dense
    mask: torch.Tensor  # (batch, n_blocks) in {0., 1.}: which blocks are computed
    gates: torch.Tensor | None = None  # top-k: what each computed block's output is scaled by


@dataclass
class Output:
    logits: torch.Tensor  # (batch, n_classes)
    layers: list[LayerTrace]


class CondNet(nn.Module):
    """Block-gated MLP with per-layer policies (see the module docstring for the equations).

    forward(x: (batch, input_dim), mode="sample" | "threshold", generator=None, masks=None) -> Output
    - sample: u ~ Bernoulli(sigma) (the paper, at train and test time), drawn from `generator`;
    - threshold: u = [sigma > 0.5], deterministic;
    - masks: one (batch, n_blocks) tensor of 0s and 1s per hidden layer, replacing the policy's choice
      (mode is then ignored).
    - estimator (sample mode, learned policies; for training): "reinforce" draws hard masks that carry no
      gradient; "straight_through" draws the same hard masks but passes the gradient to sigma as if
      mask = sigma; "gumbel" uses the relaxed draw sigmoid((logit sigma + logit U) / temperature), whose
      values lie in (0, 1) and carry the gradient.
    - soft_tree (tree routers; for training): compute every leaf block, each scaled by its path
      probability (a soft mixture), instead of the one leaf at the end of the hard path.
    x may be any real dtype (converted to the weights'); NaN or infinite inputs are refused, as by the engine.
    """

    def __init__(self, input_dim: int, n_classes: int, cfg: ModelConfig):
        super().__init__()
        self.cfg, self.input_dim, self.n_classes = cfg, input_dim, n_classes
        self.block_sizes = list(cfg.block_size)
        self.n_blocks = [w // b for w, b in zip(cfg.widths, cfg.block_size, strict=True)]
        dims = [input_dim, *cfg.widths]
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:], strict=True))
        self.output = nn.Linear(dims[-1], n_classes)
        if cfg.kind == "nn":
            self.policies = None
        else:  # a dense layer of a gated net has the placeholder NoPolicy (no parameters)
            layers = zip(dims[:-1], self.n_blocks, cfg.tau, cfg.gated, cfg.k, strict=True)
            self.policies = nn.ModuleList(self._policy_of(cfg, *layer) for layer in layers)
        self.activation = torch.tanh if cfg.activation == "tanh" else torch.relu
        for layer in [*self.hidden, self.output]:  # paper section 4.1: Glorot-uniform, zero biases
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    @staticmethod
    def _policy_of(cfg: ModelConfig, n_in: int, n_blocks: int, tau: float, gated: bool, k: int) -> nn.Module:
        if not gated:
            return NoPolicy()
        if cfg.kind == "bdnn":
            return UniformPolicy(n_blocks, tau)
        if cfg.router == "topk":
            return TopKRouter(n_in, n_blocks, k)
        if cfg.router == "tree":
            return TreeRouter(n_in, n_blocks)
        return BlockPolicy(n_in, n_blocks, cfg.p_min, cfg.p_max)

    def policy(self, layer: int) -> nn.Module | None:
        """The policy of a hidden layer, None for a dense layer."""
        if self.policies is None or isinstance(self.policies[layer], NoPolicy):
            return None
        return self.policies[layer]

    @property
    def policy_rows(self) -> list[int]:
        """Per hidden layer: the policy's or router's dot products per example (its multiply-adds are
        this times the active inputs): n_blocks for a learned policy or top-k router, the depth for a
        tree, 0 for a dense layer or a uniform policy."""
        rows = []
        for index in range(len(self.hidden)):
            policy = self.policy(index)
            if isinstance(policy, TreeRouter):
                rows.append(policy.depth)
            else:
                rows.append(self.n_blocks[index] if isinstance(policy, BlockPolicy | TopKRouter) else 0)
        return rows

    def network_parameters(self) -> list[nn.Parameter]:
        """Theta_NN: the weights and biases of the hidden and output layers."""
        return [p for layer in [*self.hidden, self.output] for p in layer.parameters()]

    def policy_parameters(self, layer: int) -> list[nn.Parameter]:
        """Theta_pi of one hidden layer: {Z, d} (empty for the NN and bdNN baselines)."""
        return [] if self.policies is None else list(self.policies[layer].parameters())  # NoPolicy: []

    def forward(
        self,
        x: torch.Tensor,
        mode: str = "sample",
        generator: torch.Generator | None = None,
        masks: list[torch.Tensor] | None = None,
        estimator: str = "reinforce",
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
        h, trace = x, []
        decision = (mode, generator, masks, estimator, temperature, soft_tree)
        for index, layer in enumerate(self.hidden):
            sigma, mask, gates = self._decide(index, h, *decision)
            pre = layer(h)
            if mask is None:  # a dense layer
                out = self.activation(pre)
                if self.training and self.cfg.dropout > 0:
                    out = F.dropout(out, self.cfg.dropout)
                mask = torch.ones(x.shape[0], self.n_blocks[index], dtype=x.dtype, device=x.device)
            else:
                scale = mask if gates is None else gates
                out = self.activation(pre) * scale.repeat_interleave(self.block_sizes[index], dim=1)
            trace.append(LayerTrace(sigma, mask, gates))
            h = out
        return Output(self.output(h), trace)

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

    def _decide(
        self, index, h, mode, generator, masks, estimator="reinforce", temperature=1.0, soft_tree=False
    ):
        """(sigma, mask, gates) of one hidden layer; (None, None, None) for a dense layer."""
        policy = self.policy(index)
        # By default the policy reads h detached: its parameters are {Z, d} only, and no policy loss
        # reaches W (model.router_detach = false lets the task loss train W through the router too).
        s = h.detach() if self.cfg.router_detach else h
        if isinstance(policy, TopKRouter):
            scores = policy(s)
            given = self._given_mask(index, h, masks)
            mask = top_k_mask(scores, policy.k) if given is None else given
            return torch.softmax(scores, dim=1), mask, gate_values(scores, mask)
        if isinstance(policy, TreeRouter):
            scores = policy(s)
            given = self._given_mask(index, h, masks)
            leaves = leaf_probabilities(scores)
            if soft_tree and given is None:  # training's soft mixture: every leaf, by its probability
                return leaves, torch.ones_like(leaves), leaves
            mask = tree_path_mask(scores) if given is None else given
            return leaves, mask, leaves * mask
        if masks is not None:
            return (None if policy is None else policy(s)), self._given_mask(index, h, masks), None
        if policy is None:  # a dense layer
            return None, None, None
        sigma = policy(s)
        if mode == "threshold":
            return sigma, (sigma > 0.5).to(h.dtype), None
        noise = torch.rand(sigma.shape, generator=generator, dtype=sigma.dtype, device=sigma.device)
        if estimator == "gumbel" and self.cfg.kind == "condnet":
            # binary concrete: sigmoid((logit sigma + logit U) / T), a relaxed Bernoulli(sigma) draw that
            # tends to the hard one as T -> 0 (the clamp keeps logit U finite)
            noise = noise.clamp(1e-6, 1 - 1e-6)
            return sigma, torch.sigmoid((torch.logit(sigma) + torch.logit(noise)) / temperature), None
        mask = (noise < sigma.detach()).to(h.dtype)
        if estimator == "straight_through" and self.cfg.kind == "condnet":
            # forward: exactly the hard draw (sigma - sigma is exactly 0); backward: d mask / d sigma = 1
            mask = mask + (sigma - sigma.detach())
        return sigma, mask, None

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

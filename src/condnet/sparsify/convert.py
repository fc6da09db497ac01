"""Gating a trained dense network after the fact (`condnet sparsify`), as contextual-sparsity systems
(MoEfication, Deja Vu) do, to tell "more capacity at the same latency" apart from "learning the
routing from scratch":

1. group the units of one hidden layer of a finished dense run into blocks of units that fire
   together (condnet.sparsify.grouping), and move them into block order (exact);
2. make that layer a top-k layer (model.router = "topk", k blocks per example) routed from the
   previous layer's output, and fit its router, with the network frozen, to predict which blocks
   matter for each input: a block's importance is the norm of what it adds to the next layer,
   ||V[:, block] h_block||, and the router's softmax is fitted to the importances (normalised to sum
   to 1) by cross-entropy;
3. fine-tune the whole gated network with the usual training loop (train.init = the converted model).

A top-k layer scales each chosen block by its gate value, which sums to 1 over the k chosen blocks;
the next layer's weights on the sparsified layer are multiplied by k at conversion, so that with equal
gates the converted network computes exactly the dense one restricted to the chosen blocks.

OUT holds converted/ (the converted checkpoint and conversion.json), finetuned/ (a finished run) and
sparsify.json (the errors at each step: validation for choosing, test for reporting).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from condnet.config import Config, from_dict, to_dict, with_overrides
from condnet.errors import CondnetError
from condnet.experiment import load_run, run_training
from condnet.nn.checkpoint import save_checkpoint
from condnet.nn.condnet import CondNet
from condnet.nn.gates.topk import top_k_mask
from condnet.run_dir import RunDir, write_json
from condnet.sparsify.grouping import activity_profiles, balanced_clusters, permute_units
from condnet.train.evaluate import evaluate

CONVERTED, FINETUNED, SUMMARY = "converted", "finetuned", "sparsify.json"


@dataclass
class SparsifyOptions:
    layer: int = -1  # the hidden layer to gate (negative: from the last)
    block_size: int = 16
    k: int = 4  # blocks computed per example
    router_epochs: int = 5
    router_lr: float = 1e-3  # fitting the router, and its rate (train.lr_policy) when fine-tuning
    profile_examples: int = 10_000  # training examples whose activations group the units
    seed: int = 0


@torch.no_grad()
def hidden_activations(model: CondNet, x: torch.Tensor, batch_size: int = 1000) -> list[torch.Tensor]:
    """Every hidden layer's output of a dense model (eval mode), (n, width) each."""
    outputs: list[list[torch.Tensor]] = [[] for _ in model.hidden]
    for start in range(0, len(x), batch_size):
        h = x[start : start + batch_size]
        for index, layer in enumerate(model.hidden):
            h = model.activation(layer(h))
            outputs[index].append(h)
    return [torch.cat(chunks) for chunks in outputs]


@torch.no_grad()
def block_importance(h: torch.Tensor, next_weight: torch.Tensor, block_size: int) -> torch.Tensor:
    """(n, width) activations, (n_next, width) weights of the next layer -> (n, n_blocks): the norm of
    each block's contribution to the next layer, ||V[:, block] h_block||_2."""
    n_next, width = next_weight.shape
    v = next_weight.reshape(n_next, width // block_size, block_size)
    chunks = [torch.einsum("nbu,obu->nbo", hb.reshape(len(hb), -1, block_size), v).norm(dim=2)
              for hb in h.split(500)]  # fmt: skip
    return torch.cat(chunks)


def gated_config(cfg: Config, layer: int, options: SparsifyOptions, init: str) -> Config:
    """The dense run's config with hidden layer `layer` gated by a top-k router, starting from `init`."""
    raw = to_dict(cfg)  # per-layer fields are lists of one value per hidden layer (validated)
    model, train = raw["model"], raw["train"]
    model["block_size"][layer], train["lr_policy"][layer] = options.block_size, options.router_lr
    model.update(kind="condnet", router="topk", gated=[i == layer for i in range(len(model["widths"]))],
                 k=[options.k] * len(model["widths"]))  # fmt: skip
    train["init"] = init
    return from_dict(raw)


def check_options(model: CondNet, options: SparsifyOptions) -> int:
    """The layer index (from 0), after checking that the options fit the dense model."""
    n_hidden = len(model.hidden)
    if model.cfg.is_gated:
        raise CondnetError(f"sparsify gates a dense run (model.kind = nn); this run is gated "
                           f"(model.kind = {model.cfg.kind!r})")  # fmt: skip
    if not -n_hidden <= options.layer < n_hidden:
        raise CondnetError(f"--layer {options.layer}: the run has {n_hidden} hidden layer(s)")
    layer = options.layer % n_hidden
    width = model.cfg.widths[layer]
    if options.block_size < 1 or width % options.block_size or width // options.block_size < 2:
        raise CondnetError(f"--block-size {options.block_size} must divide layer {layer}'s width {width} "
                           f"into at least 2 blocks")  # fmt: skip
    if not 1 <= options.k < width // options.block_size:
        raise CondnetError(f"--k {options.k} must be from 1 to {width // options.block_size - 1} (fewer "
                           f"blocks than the layer's {width // options.block_size})")  # fmt: skip
    if options.router_epochs < 0 or options.profile_examples < options.block_size:
        raise CondnetError("--router-epochs must be >= 0 and --profile-examples >= the block size")
    return layer


def convert(dense: CondNet, cfg: Config, profile: torch.Tensor, options: SparsifyOptions, layer: int):
    """Steps 1 and 2 without the router fit: (the gated CondNet, the block groups of old unit indices).
    profile: hidden layer `layer`'s activations on the examples that group its units, (n, width)."""
    groups = balanced_clusters(activity_profiles(profile.numpy()), options.block_size, seed=options.seed)
    next_name = _next_layer(layer, len(dense.hidden))
    state = {name: value.clone() for name, value in dense.state_dict().items()}
    permute_units(state, layer, groups.reshape(-1), next_name)
    state[f"{next_name}.weight"] *= options.k  # gates sum to 1 over the k chosen blocks
    torch.manual_seed(options.seed)  # the router's initial weights
    gated = CondNet(dense.input_dim, dense.n_classes, gated_config(cfg, layer, options, "").model)
    missing, unexpected = gated.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) == {f"policies.{layer}.Z", f"policies.{layer}.d"}
    return gated.eval(), groups


def fit_router(
    gated: CondNet, layer: int, s: torch.Tensor, importance: torch.Tensor, options: SparsifyOptions
) -> None:
    """Fit the top-k router of `layer` (inputs s: (n, n_in)) to the blocks' importances, (n, n_blocks),
    by cross-entropy between its softmax and the normalised importances; the network is not touched."""
    router = gated.policies[layer]
    target = importance / importance.sum(dim=1, keepdim=True).clamp_min(1e-12)
    optimizer = torch.optim.Adam(router.parameters(), lr=options.router_lr)
    generator = torch.Generator().manual_seed(options.seed)
    for _ in range(options.router_epochs):
        for idx in torch.randperm(len(s), generator=generator).split(128):
            loss = -(target[idx] * F.log_softmax(router(s[idx]), dim=1)).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


@torch.no_grad()
def router_recall(scores: torch.Tensor, importance: torch.Tensor, k: int) -> float:
    """The mean fraction of each example's k most important blocks that the router's top k holds."""
    return ((top_k_mask(scores, k) * top_k_mask(importance, k)).sum(dim=1) / k).mean().item()


def sparsify(
    run_dir: str | Path,
    out: str | Path,
    options: SparsifyOptions,
    overrides: list[str] = (),
    force: bool = False,
    progress=None,
) -> dict:
    """Gate a finished dense run (steps 1-3 of the module docstring) into OUT; returns sparsify.json.
    overrides: `--set key=value` changes to the fine-tuning config (epochs, rates...);
    progress(max_epochs) -> (on_batch, on_epoch), the fine-tuning's progress callbacks."""
    cfg, dense, splits = load_run(run_dir)
    layer = check_options(dense, options)
    out = Path(out)
    if (out / SUMMARY).exists() and not force:
        raise CondnetError(f"{out} holds a finished sparsify; choose another --out or pass --force")
    if any(text.strip().startswith("model.") for text in overrides):
        raise CondnetError("--set model.* is not allowed: the gated model is what --layer, --block-size "
                           "and --k make of the dense one")  # fmt: skip
    converted_dir = out / CONVERTED
    tuned_cfg = with_overrides(gated_config(cfg, layer, options, str(converted_dir)), list(overrides))
    inputs = [splits.x_train, splits.x_valid]
    acts = [hidden_activations(dense, x) for x in inputs]
    gated, groups = convert(dense, cfg, acts[0][layer][: options.profile_examples], options, layer)
    next_weight = gated.state_dict()[f"{_next_layer(layer, len(gated.hidden))}.weight"]
    reorder = torch.as_tensor(groups.reshape(-1))
    importance = [block_importance(a[layer][:, reorder], next_weight, options.block_size) for a in acts]
    router_in = [x if layer == 0 else a[layer - 1] for x, a in zip(inputs, acts, strict=True)]
    fit_router(gated, layer, router_in[0], importance[0], options)
    with torch.no_grad():
        recall = router_recall(gated.policies[layer](router_in[1]), importance[1], options.k)
    save_checkpoint(gated, converted_dir)

    def valid_error(model: CondNet) -> float:
        return evaluate(model, splits.x_valid, splits.y_valid, "threshold", cfg.train.eval_batch_size).error

    conversion = {
        "dense_run": str(run_dir),
        "options": asdict(options) | {"layer": layer},
        "dense_valid_error": valid_error(dense),
        "converted_valid_error": valid_error(gated),
        "router_valid_recall": recall,  # of the k most important blocks, by the router's top k
    }
    write_json(converted_dir / "conversion.json", conversion)
    callbacks = progress(tuned_cfg.train.max_epochs) if progress else (None, None)
    metrics = run_training(tuned_cfg, out / FINETUNED, force, *callbacks)
    history = RunDir(out / FINETUNED).history()
    summary = conversion | {
        "finetuned_valid_error": min(record["valid_error"] for record in history),
        "dense_test_error": _test_error(Path(run_dir)),
        "finetuned_test_error": metrics["test_error"]["threshold"],
        "finetuned_activation_rate": metrics["activation_rate"],
    }
    write_json(out / SUMMARY, summary)
    return summary


def _next_layer(layer: int, n_hidden: int) -> str:
    """The name of the layer that hidden layer `layer` feeds."""
    return f"hidden.{layer + 1}" if layer + 1 < n_hidden else "output"


def _test_error(run_dir: Path) -> float:
    errors = RunDir(run_dir).metrics()["test_error"]
    return errors["threshold"] if errors["threshold"] is not None else errors["sample"]

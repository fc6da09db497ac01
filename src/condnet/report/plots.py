"""Plots of a run: learning curves and the paper's Figure 1 view of the policies."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from condnet.run_dir import save_figure  # noqa: E402


def spread_labels(ax, labels, step: float = 8.0, tries: int = 40) -> None:
    """Move point labels (annotations placed in offset points) down a step at a time until none overlaps
    one placed before it, the highest first: configs at about the same point had their names drawn on
    top of each other. Call after the layout is final (tight_layout)."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for label in sorted(labels, key=lambda a: -ax.transData.transform(a.xy)[1]):
        for _ in range(tries):
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            dx, dy = label.xyann
            label.xyann = (dx, dy - step)
        placed.append(label.get_window_extent(renderer))


def learning_curves(history: list[dict], path: str | Path) -> None:
    """Train and validation NLL and error per epoch, and the epoch whose weights were kept (the lowest
    validation error: early stopping keeps that epoch's weights)."""
    epochs = [r["epoch"] for r in history]
    kept = min(history, key=lambda r: r["valid_error"])["epoch"] if history else None
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "train"), ("valid", "valid (sample mode)")):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in history], label=label)
        ax_err.plot(epochs, [100 * r[f"{key}_error"] for r in history], label=label)
    ax_loss.set(xlabel="epoch", ylabel="NLL", title="loss")
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="error", yscale="log")
    ax_err.yaxis.set_major_formatter(ScalarFormatter())  # plain numbers, not powers of ten
    ax_err.yaxis.set_minor_formatter(ScalarFormatter())
    ax_err.tick_params(which="minor", labelsize=7)
    for ax in (ax_loss, ax_err):
        if kept is not None:
            ax.axvline(kept, color="gray", ls="--", lw=1, label=f"kept: epoch {kept} (best validation)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def most_distinct_classes(sigma: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """The two classes whose mean activation-probability vectors are furthest apart (L1)."""
    classes = labels.unique().tolist()
    means = {c: sigma[labels == c].mean(dim=0) for c in classes}
    pairs = [(a, b) for i, a in enumerate(classes) for b in classes[i + 1 :]]
    return (
        max(pairs, key=lambda p: (means[p[0]] - means[p[1]]).abs().sum().item())
        if pairs
        else (classes[0],) * 2
    )


def policy_figure(
    sigma: torch.Tensor, labels: torch.Tensor, layer: int, path: str | Path, max_points: int = 400
):
    """Paper Figure 1: each example's activation probability per block, for two classes and for all.

    sigma: (n, n_blocks) probabilities on a split; labels: (n,). Dots are examples, bars the class means.
    """
    a, b = most_distinct_classes(sigma, labels)
    blocks = torch.arange(sigma.shape[1]).float()
    fig, (ax_two, ax_all) = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for c, colour, shift in ((a, "tab:red", -0.15), (b, "tab:blue", 0.15)):
        rows = sigma[labels == c][:max_points]
        ax_two.scatter(
            (blocks + shift).repeat(len(rows), 1).flatten(), rows.flatten(), s=4, alpha=0.15, color=colour
        )
        ax_two.plot(
            blocks + shift, rows.mean(dim=0), "_", ms=14, mew=2, color=colour, label=f"class {c} (mean)"
        )
    ax_two.set(
        title=f"layer {layer + 1}: classes {a} and {b}", xlabel="block", ylabel="activation probability"
    )
    ax_two.legend(loc="upper right")
    cmap = plt.get_cmap("tab10")
    for c in labels.unique().tolist():
        ax_all.plot(
            blocks, sigma[labels == c].mean(dim=0), "o-", ms=3, lw=1, color=cmap(c % 10), label=str(c)
        )
    ax_all.set(title=f"layer {layer + 1}: mean per class", xlabel="block")
    ax_all.legend(ncol=5, fontsize=7, title="class")
    for ax in (ax_two, ax_all):
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

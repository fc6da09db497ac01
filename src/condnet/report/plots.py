"""Plots of a run: learning curves and the paper's Figure 1 view of the policies."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

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


def plain_log_labels(axis) -> None:
    """A log axis labelled in plain numbers (0.2, not 2x10^-1), the minor ticks only at 2, 3, 5 and 7 times
    a power of ten, so that neighbouring labels (0.08, 0.09) do not run into each other; all of them on
    an axis narrower than half a decade, which would otherwise show one label or none."""

    def minor(value, _):
        low, high = sorted(axis.get_view_interval())
        if low > 0 and high / low < 10**0.5:
            return f"{value:g}"
        mantissa = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
        return f"{value:g}" if round(mantissa, 6) in (2, 3, 5, 7) else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def learning_curves(history: list[dict], path: str | Path, valid_label: str = "valid") -> None:
    """Train and validation NLL and error per epoch, and the epoch whose weights were kept (the lowest
    validation error: early stopping keeps that epoch's weights). valid_label names the validation
    curves (a gated net's say how its gates decided)."""
    epochs = [r["epoch"] for r in history]
    kept = min(history, key=lambda r: r["valid_error"])["epoch"] if history else None
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "train"), ("valid", valid_label)):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in history], label=label)
        ax_err.plot(epochs, [100 * r[f"{key}_error"] for r in history], label=label)
    ax_loss.set(xlabel="epoch", ylabel="NLL", title="loss")
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="error")
    errors = [r[f"{key}_error"] for r in history for key in ("train", "valid")]
    if errors and min(errors) > 0:
        ax_err.set_yscale("log")
    else:  # an error of 0 (a small or easy training set) has no place on a log axis: linear below 0.1 %
        ax_err.set_yscale("symlog", linthresh=0.1)
    plain_log_labels(ax_err.yaxis)
    ax_err.tick_params(which="minor", labelsize=7)
    for ax in (ax_loss, ax_err):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
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
    sigma: torch.Tensor,
    labels: torch.Tensor,
    layer: int,
    path: str | Path,
    means: str = "activation probability",
    max_points: int = 400,
):
    """Paper Figure 1: each example's gate value per block for two classes, and every class's mean.

    sigma: (n, n_blocks) on a split; labels: (n,); means: what sigma is for this gate (its GateSpec's
    sigma_means). Left: dots are examples, bars the class means; right: class x block means, a map
    (blocks are unordered, so no line joins them)."""
    a, b = most_distinct_classes(sigma, labels)
    blocks = torch.arange(sigma.shape[1]).float()
    fig, (ax_two, ax_all) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(1, 1.1))
    for c, colour, shift in ((a, "tab:red", -0.15), (b, "tab:blue", 0.15)):
        rows = sigma[labels == c][:max_points]
        ax_two.scatter(
            (blocks + shift).repeat(len(rows), 1).flatten(), rows.flatten(), s=4, alpha=0.15, color=colour
        )
        ax_two.plot(
            blocks + shift, rows.mean(dim=0), "_", ms=14, mew=2, color=colour, label=f"class {c} (mean)"
        )
    ax_two.set(title=f"layer {layer + 1}: classes {a} and {b}", xlabel="block", ylabel=means, ylim=(0, 1.12))
    ax_two.legend(loc="upper right", ncol=2, fontsize=8)  # above the data: the axis reaches 1.12
    ax_two.grid(alpha=0.3)
    classes = labels.unique().tolist()
    table = torch.stack([sigma[labels == c].mean(dim=0) for c in classes]).numpy()
    image = ax_all.imshow(table, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ax_all.set(title=f"layer {layer + 1}: mean per class", xlabel="block", ylabel="class",
               yticks=range(len(classes)), yticklabels=[str(c) for c in classes])  # fmt: skip
    fig.colorbar(image, ax=ax_all, label=f"mean {means}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

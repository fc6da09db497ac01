"""The figures of `condnet reproduce` and `condnet ablate`."""

from __future__ import annotations

from pathlib import Path

from condnet.report.plots import plain_log_labels, plt, spread_labels
from condnet.reproduce.report import RowSummary, credited_latency, is_gated
from condnet.reproduce.runner import is_finished
from condnet.run_dir import RunDir, save_figure

COLORS = {"condnet": "tab:red", "nn": "tab:blue", "bdnn": "tab:green"}


def pareto(summaries: list[RowSummary], records: list[dict], title: str, path: Path) -> None:
    """Test error against batch-1 latency (the paper's Figure 3): every run faded, row means with bars
    from the lowest to the highest seed (a mean minus one sd can be below 0, off a log axis)."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    names, kinds, errors = [], set(), []
    for s in summaries:
        if s.latency is None or s.error is None:
            continue
        runs = [r for r in records if r["row"] == s.name and r.get("batch1_engine_ms") is not None]
        color = COLORS.get(s.kind, "black")
        latencies = [credited_latency(r) for r in runs]
        seeds = [100 * r["test_error_sample"] for r in runs] or [s.error[0]]
        ax.scatter(latencies, [100 * r["test_error_sample"] for r in runs], s=10, color=color, alpha=0.35)
        marker = "o" if s.gated else "s"
        spread = [[s.error[0] - min(seeds)], [max(seeds) - s.error[0]]]
        ax.errorbar(s.latency, s.error[0], yerr=spread, fmt=marker, color=color, capsize=3)
        kinds.add(s.kind)
        errors += seeds
        names.append(ax.annotate(s.name, (s.latency, s.error[0]), textcoords="offset points", xytext=(5, 4),
                                 fontsize=7))  # fmt: skip
    dense = [s for s in summaries if not s.gated and s.latency and s.error]
    dense.sort(key=lambda s: s.latency)
    ax.plot([s.latency for s in dense], [s.error[0] for s in dense], color=COLORS["nn"], alpha=0.4, lw=1)
    ort = any(r.get("batch1_ort_ms") not in (None, "") for r in records if not is_gated(r))
    dense_label = ("dense NN (fastest of PyTorch, engine, ONNX Runtime)" if ort else
                   "dense NN (faster of PyTorch and engine: timed before ONNX Runtime was)")  # fmt: skip
    labels = {"condnet": "condnet (engine)", "nn": dense_label, "bdnn": "bdNN (engine)"}
    for kind, label in labels.items():
        if kind in kinds:  # the legend lists only what is drawn
            ax.scatter([], [], color=COLORS[kind], label=label)
    ax.scatter(
        [],
        [],
        s=10,
        color="gray",
        alpha=0.35,
        label="one seed; markers: row means, bars: lowest to highest seed",
    )
    yscale = (
        "log" if errors and min(errors) > 0 else "linear"
    )  # a 0 % error (tiny test data) is off a log axis
    ax.set(xscale="log", yscale=yscale, xlabel="batch-1 latency, one core (ms)", ylabel="test error (%)",
           title=title)  # fmt: skip
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not powers of ten, on the log axes
        plain_log_labels(axis)
    ax.tick_params(which="minor", labelsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    spread_labels(ax, names)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def curves(runs: dict[str, list[Path]], title: str, path: Path) -> None:
    """Validation error and activation rate per epoch, one line per finished run, one color per row
    (`runs`: row name -> its run directories, in the table's order), each run's kept epoch marked."""
    fig, (ax_err, ax_rate) = plt.subplots(1, 2, figsize=(11, 4.2))
    lowest = float("inf")
    for index, (row, run_dirs) in enumerate(runs.items()):
        color = f"C{index}"
        histories = [RunDir(d).history() for d in run_dirs if is_finished(d)]
        for n, history in enumerate(histories):
            epochs = [h["epoch"] for h in history]
            label = row if n == 0 else None
            error = [100 * h["valid_error"] for h in history]
            lowest = min([lowest, *error])
            ax_err.plot(epochs, error, color=color, alpha=0.7, label=label)
            kept = min(range(len(error)), key=error.__getitem__)  # early stopping's rule: the lowest
            ax_err.plot(epochs[kept], error[kept], "o", color=color, markersize=4)
            rate = [sum(h["activation_rate"]) / len(h["activation_rate"]) for h in history]
            ax_rate.plot(epochs, rate, color=color, alpha=0.7, label=label)
    ax_err.plot([], [], "o", color="gray", markersize=4, label="the epoch each run kept")
    scale = "log" if lowest > 0 else "linear"  # a 0 % error (tiny test data) cannot be log-scaled
    ax_err.set(xlabel="epoch", ylabel="validation error, sample mode (%)", yscale=scale, title=title)
    if scale == "log":
        plain_log_labels(ax_err.yaxis)
    ax_rate.set(xlabel="epoch", ylabel="fraction of blocks active (validation)", title="activation rate")
    for ax in (ax_err, ax_rate):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def tradeoff(summaries: list[RowSummary], title: str, path: Path) -> None:
    """Test error against the engine's batch-1 latency, one point per row (the paper's Figure 5a)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    points = [s for s in summaries if s.latency is not None and s.error is not None]
    ax.errorbar([s.latency for s in points], [s.error[0] for s in points], yerr=[s.error[1] for s in points],
                fmt="o-", capsize=3, color=COLORS["condnet"])  # fmt: skip
    names = []
    middle = (min(s.latency for s in points) + max(s.latency for s in points)) / 2 if points else 0
    for s in points:
        rate = sum(m for m, _ in s.rates) / max(1, len(s.rates))
        right = s.latency > middle  # labels of the right half go to the left of their point: inside
        label = f"{s.name}\nrate {rate:.3f}"
        offset, align = ((-5, 4), "right") if right else ((5, 4), "left")
        names.append(ax.annotate(label, (s.latency, s.error[0]), textcoords="offset points", xytext=offset,
                                 ha=align, fontsize=7))  # fmt: skip
    ax.margins(x=0.15, y=0.12)  # room for the labels of the points at the edges
    ax.set(xlabel="batch-1 latency, engine, one core (ms)", ylabel="test error, sample mode (%)", title=title)
    ax.scatter([], [], s=0, label="markers: row means over seeds; bars: ± one sd")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    spread_labels(ax, names)
    save_figure(fig, path, dpi=120)
    plt.close(fig)

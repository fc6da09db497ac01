"""The paper's tables and ablations as rows: a config file, overrides, and the paper's numbers.

The paper's numbers are given where they could be checked here (the MNIST ones, from section 4.2,
and the 5.3x of the best CIFAR-10 model); the others are left empty rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from condnet.config import PACKAGED_CONFIGS
from condnet.errors import CondnetError

CONFIG_DIR = PACKAGED_CONFIGS


@dataclass(frozen=True)
class Row:
    name: str  # the row's label and its directory under the table's output directory
    config: str  # path under configs/
    overrides: tuple[str, ...] = ()  # `--set` style, applied after the command's own (the row wins)
    paper_error: float | None = None  # percent, on the table's own dataset
    paper_speedup: float | None = None
    sweep: bool = False  # part of the dense width sweep of the Pareto plot, not a paper row


@dataclass(frozen=True)
class Table:
    name: str
    dataset: str  # the dataset the paper's numbers are on
    rows: tuple[Row, ...]
    plot: str  # which figure the report draws: pareto | curves | tradeoff


def _sweep(widths: list[int]) -> tuple[Row, ...]:
    """Dense nets of one hidden layer, trained like NN-256, for the error-latency front."""
    return tuple(
        Row(f"nn-{w}", "mnist_nn256.toml", (f"model.widths=[{w}]", f"model.block_size=[{w}]"), sweep=True)
        for w in widths
    )


MNIST = Table(
    "mnist",
    "mnist",
    (
        Row("condnet-paper", "mnist_paper.toml", paper_error=2.3),
        Row("condnet-adam", "mnist_condnet.toml"),
        # bdNN at the rate condnet-adam learns (0.094 of the blocks, docs/RESULTS.md section 1)
        Row("bdnn", "mnist_paper.toml", ("model.kind=bdnn", "model.tau=[0.094]")),
        Row("nn-256", "mnist_nn256.toml", paper_error=1.9),
        Row("nn-32", "mnist_nn32.toml", paper_error=2.8),
        *_sweep([16, 64, 128, 512]),
    ),
    "pareto",
)

CIFAR10 = Table(
    "cifar10",
    "cifar10",
    (
        Row("condnet-1536x2-b64", "cifar10/condnet_1536x2_b64.toml"),
        Row("condnet-256-512-b16", "cifar10/condnet_256_512_b16.toml"),
        Row("condnet-640x2-b64", "cifar10/condnet_640x2_b64.toml", paper_speedup=5.3),
        Row("bdnn-640x2-r0.18", "cifar10/bdnn_640x2_b64_r018.toml"),
        Row("bdnn-1536x2-tau1/24", "cifar10/bdnn_1536x2_b64_tau24.toml"),
        Row("nn-1536x2", "cifar10/nn_1536x2.toml"),
        Row("nn-640x2", "cifar10/nn_640x2.toml"),
        Row("nn-256-512", "cifar10/nn_256_512.toml"),
    ),
    "pareto",
)

SVHN = Table(
    "svhn",
    "svhn",
    (
        Row("condnet-208-128-b16", "svhn/condnet_208_128_b16.toml"),
        Row("condnet-432-112-b16", "svhn/condnet_432_112_b16.toml"),
        Row("condnet-800-704-b32", "svhn/condnet_800_704_b32.toml"),
        Row("nn-208-128", "svhn/nn_208_128.toml"),
        Row("nn-432-112", "svhn/nn_432_112.toml"),
        Row("nn-800-704", "svhn/nn_800_704.toml"),
    ),
    "pareto",
)

TABLES = {t.name: t for t in (MNIST, CIFAR10, SVHN)}

# Ablations (paper section 5), all on configs/mnist_condnet.toml.
FIRST_EPOCHS = ("train.max_epochs=10", "train.patience=10")  # Figure 5b: 10 epochs, no early stop
ABLATIONS = {
    "no-regularizers": Table(
        "no-regularizers",
        "mnist",
        (
            Row("with", "mnist_condnet.toml"),
            Row("without", "mnist_condnet.toml", ("train.lambda_s=0.0", "train.lambda_v=0.0")),
        ),
        "curves",
    ),
    # Figure 5b: lambda_v's effect on the first epochs (10 epochs, no early stop)
    "lambda-v": Table(
        "lambda-v",
        "mnist",
        tuple(
            Row(f"lambda_v={v}", "mnist_condnet.toml", (f"train.lambda_v={v}", *FIRST_EPOCHS))
            for v in (0.0, 1.5625, 6.25)
        ),
        "curves",
    ),
    # Figure 5a: lambda_s trades error for time
    "lambda-s": Table(
        "lambda-s",
        "mnist",
        tuple(
            Row(f"lambda_s={s}", "mnist_condnet.toml", (f"train.lambda_s={s}",))
            for s in (0.1, 0.4, 1.5625, 6.25, 25.0)
        ),
        "tradeoff",
    ),
}


def select_rows(table: Table, names: list[str] | None) -> Table:
    """The table restricted to the named rows (all of them when names is None)."""
    if not names:
        return table
    known = [row.name for row in table.rows]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CondnetError(f"no row {', '.join(unknown)} in table {table.name}; its rows: {', '.join(known)}")
    return Table(table.name, table.dataset, tuple(r for r in table.rows if r.name in names), table.plot)


def config_path(row: Row, config_dir: Path = CONFIG_DIR) -> Path:
    path = config_dir / row.config
    if not path.is_file():
        raise CondnetError(
            f"config {path} for row {row.name} not found; pass --configs DIR (a directory of configs like "
            f"the packaged ones, {PACKAGED_CONFIGS})"
        )
    return path

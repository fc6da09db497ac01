"""The `condnet` command line: parses, calls the library, prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from condnet.config import load_config
from condnet.errors import CondnetError


def _progress_callbacks(max_epochs: int):
    from tqdm import tqdm

    bar = {"bar": None, "epoch": 1}

    def on_batch(done: int, total: int) -> None:
        if bar["bar"] is None:
            bar["bar"] = tqdm(
                total=total, desc=f"epoch {bar['epoch']}/{max_epochs}", leave=False, unit="batch"
            )
        bar["bar"].update(1)

    def on_epoch(record) -> None:
        if bar["bar"] is not None:
            bar["bar"].close()
            bar["bar"] = None
        bar["epoch"] = record.epoch + 1
        rates = " ".join(f"{r:.3f}" for r in record.activation_rate)
        tqdm.write(
            f"epoch {record.epoch:3d}  train err {100 * record.train_error:6.2f}%  "
            f"valid err {100 * record.valid_error:6.2f}%  valid nll {record.valid_loss:.4f}  "
            f"active [{rates}]  {record.train_seconds:.1f}s"
        )

    return on_batch, on_epoch


def cmd_train(args) -> None:
    from condnet.experiment import run_training

    cfg = load_config(args.config, args.set or [], args.seed)
    on_batch, on_epoch = _progress_callbacks(cfg.train.max_epochs)
    metrics = run_training(cfg, args.out, args.force, on_batch, on_epoch)
    errors = metrics["test_error"]
    threshold = "n/a" if errors["threshold"] is None else f"{100 * errors['threshold']:.2f}%"
    print(
        f"{args.out}: test error {100 * errors['sample']:.2f}% (sample), {threshold} (threshold); "
        f"active {', '.join(f'{r:.3f}' for r in metrics['activation_rate'])}; "
        f"MACs {metrics['macs']:.0f} of {metrics['dense_macs']} dense"
    )


def cmd_eval(args) -> None:
    from condnet.experiment import evaluate_run

    modes = [args.mode] if args.mode else ["sample", "threshold"]
    for mode in modes:
        result = evaluate_run(args.run_dir, mode, args.seed)
        rates = ", ".join(f"{r:.4f}" for r in result.activation_rate)
        print(
            f"{mode:9s}  test error {100 * result.error:.2f}%  nll {result.loss:.4f}  active [{rates}]  "
            f"MACs {result.macs:.0f}"
        )


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def cmd_summary(args) -> None:
    from condnet.report.summary import group_by_config, mean_std, read_run

    runs = [read_run(path) for path in args.run_dirs]
    columns = ("run", "seed", "err sample", "err thresh", "active", "MACs/dense", "epochs", "s/epoch")
    print(f"{columns[0]:34s}" + "".join(f"{c:>12s}" for c in columns[1:]))
    for run in runs:
        m, a = run.metrics, run.analysis
        print(
            f"{str(run.path):34s}{m['seed']:12d}{_percent(m['test_error']['sample']):>12s}"
            f"{_percent(m['test_error']['threshold']):>12s}"
            f"{'/'.join(f'{r:.3f}' for r in m['activation_rate']):>12s}{m['macs'] / m['dense_macs']:12.3f}"
            f"{m['epochs']:12d}{a['seconds_per_epoch']:12.2f}"
        )
    groups = [g for g in group_by_config(runs) if len(g) > 1]
    if groups:
        print("\nmean +- std over seeds (n runs)")
        for group in groups:
            cells = []
            for mode in ("sample", "threshold"):
                values = [r.metrics["test_error"][mode] for r in group]
                if None in values:
                    cells.append("n/a")
                else:
                    mean, std = mean_std(values)
                    cells.append(f"{100 * mean:.2f} +- {100 * std:.2f}%")
            rate, _ = mean_std([statistics_mean(r.metrics["activation_rate"]) for r in group])
            print(
                f"  {str(group[0].path):32s} (n={len(group)})  sample {cells[0]}  threshold {cells[1]}  "
                f"active {rate:.3f}"
            )


def statistics_mean(values: list[float]) -> float:
    return sum(values) / len(values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="condnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a TOML config into a run directory")
    p.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.lr_net=0.01"
    )
    p.add_argument("--seed", type=int, help="random seed (overrides the config's)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty run directory")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="recompute a run's test metrics from its checkpoint")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--mode", choices=["sample", "threshold"], help="default: both")
    p.add_argument("--seed", type=int, help="seed of the sample-mode draws (default: the run's seed)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("summary", help="print a table comparing finished runs")
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CondnetError as exc:
        print(f"condnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("condnet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

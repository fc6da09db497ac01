"""The `condnet` command line: parses, calls the library, prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from condnet.config import load_config
from condnet.errors import CondnetError
from condnet.run_dir import CONFIG, RunDir

# the extra (pyproject.toml) that brings each optional module: the core package runs the engine only.
# `condnet bench` needs the bench extra, which has torch too.
MODULE_EXTRA = {"torch": "train", "tqdm": "train", "matplotlib": "train", "scipy": "train",
                "onnx": "bench", "onnxruntime": "bench", "optuna": "search"}  # fmt: skip


def _progress_callbacks(max_epochs: int):
    from tqdm import tqdm

    bar = {"bar": None, "epoch": 1}

    def on_batch(done: int, total: int) -> None:
        if bar["bar"] is None:
            # disable=None: no bar when the output is not a terminal (logs, CI); epoch lines remain
            bar["bar"] = tqdm(
                total=total,
                desc=f"epoch {bar['epoch']}/{max_epochs}",
                leave=False,
                unit="batch",
                disable=None,
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

    if args.resume is not None:
        if args.config or args.set or args.seed is not None or args.out or args.force:
            raise CondnetError("--resume RUN_DIR continues a run with its own config: give no other option")
        run = RunDir(args.resume)
        repaired = run.repair()  # a commit a kill interrupted is finished first
        if repaired and not run.has_partial():
            print(f"{run.path}: {repaired} (a command was killed while doing it); nothing left to resume")
            return
        cfg, args.out = load_config(run.start(resume=True) / CONFIG), args.resume
    else:
        if args.out is None:
            raise CondnetError("give --out RUN_DIR (a new run) or --resume RUN_DIR (an unfinished one)")
        cfg = load_config(args.config, args.set or [], args.seed)
    on_batch, on_epoch = _progress_callbacks(cfg.train.max_epochs)
    try:
        metrics = run_training(cfg, args.out, args.force, on_batch, on_epoch, resume=args.resume is not None)
    except KeyboardInterrupt:
        if RunDir(args.out).has_partial():
            print(f"condnet: `condnet train --resume {args.out}` continues this run", file=sys.stderr)
        raise
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
    if (
        not args.mode
        and not load_config(RunDir(args.run_dir).require_finished() / CONFIG).model.has_threshold_mode
    ):
        modes = ["sample"]  # bdNN's constant policy has no threshold mode
    for mode in modes:
        result = evaluate_run(args.run_dir, mode, args.seed)
        rates = ", ".join(f"{r:.4f}" for r in result.activation_rate)
        print(
            f"{mode:9s}  test error {100 * result.error:.2f}%  nll {result.loss:.4f}  active [{rates}]  "
            f"MACs {result.macs:.0f}"
        )
    if args.engine:
        from condnet.experiment import engine_threshold_error

        print(f"engine     test error {100 * engine_threshold_error(args.run_dir):.2f}% (threshold mode)")


def cmd_summary(args) -> None:
    from condnet.report.summary import group_by_config, mean_std, read_run

    runs = [read_run(path) for path in args.run_dirs]

    def layers(values, fmt="{:.3f}"):
        return "/".join(fmt.format(v) for v in values)

    def spread(values, scale=1.0, digits=2):
        if any(v is None for v in values):
            return "n/a"
        mean, std = mean_std([scale * v for v in values])
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    head = "test error sample % | threshold % | active | MACs / dense | specificity"
    print(f"| run | seed | {head} | epochs | s/epoch |\n|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        m, a = run.metrics, run.analysis
        errors = [m["test_error"][k] for k in ("sample", "threshold")]
        cells = ["n/a" if e is None else f"{100 * e:.2f}" for e in errors]
        rates = layers(m["activation_rate"])
        print(
            f"| {run.path} | {m['seed']} | {cells[0]} | {cells[1]} | {rates} | "
            f"{m['macs'] / m['dense_macs']:.3f} | {layers(a['class_specificity'], '{:.2f}')} | "
            f"{m['epochs']} | {a['seconds_per_epoch']:.2f} |"
        )
    groups = group_by_config(runs)
    if all(len(group) == 1 for group in groups):
        return
    print("\nmean ± std (sample standard deviation) over the seeds of each configuration\n")
    print(f"| config (first run) | n | {head} | s/epoch |\n|---|---|---|---|---|---|---|---|")
    for group in groups:
        n_layers = len(group[0].metrics["activation_rate"])
        rate = "/".join(
            spread([r.metrics["activation_rate"][i] for r in group], digits=3) for i in range(n_layers)
        )
        spec = "/".join(spread([r.analysis["class_specificity"][i] for r in group]) for i in range(n_layers))
        errors = [spread([r.metrics["test_error"][k] for r in group], 100) for k in ("sample", "threshold")]
        print(
            f"| {group[0].path} | {len(group)} | {errors[0]} | {errors[1]} | {rate} | "
            f"{spread([r.metrics['macs'] / r.metrics['dense_macs'] for r in group], digits=3)} | {spec} | "
            f"{spread([r.analysis['seconds_per_epoch'] for r in group])} |"
        )


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


CLUSTER_HELP = "a running Dask scheduler to train on (default: $CONDNET_CLUSTER, else local workers)"


def _seed(text: str) -> int:
    from condnet.limits import check_seed

    try:
        return check_seed(int(text))
    except ValueError:
        message = f"expected a whole number from 0 to 2^63 - 1, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _densities(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"densities must be in (0, 1] (a layer with no block on computes nothing), got {text!r}"
        )
    return values


def _per_layer(values: list, n: int, name: str) -> list:
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise CondnetError(f"{name}: give one value or one per hidden layer ({n}), got {len(values)}")
    return values


def cmd_bench(args) -> None:
    import json
    import os

    # PyTorch's and numba's OpenMP pools and OpenBLAS's share the cores in this process; idle OpenMP
    # threads spinning took the cores from whichever ran next (2 threads, 784-256-10 at batch 50:
    # PyTorch 3.9 ms instead of 0.34). Set before torch and numba start their pools; a user's own
    # OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from dataclasses import asdict

    import numpy as np

    from condnet.bench.compare import bench, synthetic_model
    from condnet.engine.timing import machine, read_bandwidth
    from condnet.limits import check_batch_fits

    if (args.run_dir is None) == (args.arch is None):
        given = "neither was given" if args.run_dir is None else "both were given"
        raise CondnetError(f"give RUN_DIR (a trained run) or --arch (a synthetic model): {given}")
    import numba

    if max(args.threads) > numba.config.NUMBA_NUM_THREADS:
        raise CondnetError(
            f"--threads {max(args.threads)}: this machine allows at most {numba.config.NUMBA_NUM_THREADS}"
        )
    if args.run_dir is not None:
        from condnet.experiment import load_run

        _, model, splits = load_run(args.run_dir)
        inputs = splits.x_test.numpy()
    else:
        if len(args.arch) < 3:
            raise CondnetError("--arch needs an input size, at least one hidden width and a class count")
        n_hidden = len(args.arch) - 2
        model = synthetic_model(
            args.arch,
            _per_layer(args.block_size, n_hidden, "--block-size"),
            _per_layer(args.density, n_hidden, "--density"),
            args.seed,
            args.kind,
        )
        inputs = np.random.default_rng(args.seed).random((1024, args.arch[0]), dtype=np.float32)
    per_example = model.input_dim + sum(model.cfg.widths) + model.n_classes
    for batch in args.batch:
        check_batch_fits(batch, per_example)
    records = bench(model, inputs, args.batch, args.threads, args.mode, args.repeats, args.seed,
                    weights=args.weights)  # fmt: skip
    bandwidth = read_bandwidth()
    if args.json:
        output = {"machine": machine(), "memory_gbps": bandwidth, "weights": args.weights,
                  "records": [asdict(r) for r in records]}  # fmt: skip
        print(json.dumps(output, indent=2))
        return
    print(
        f"{machine()}; engine weights {args.weights}; one core reads memory at {bandwidth:.1f} GB/s; times "
        "per batch in ms; dense = the dense twin (PyTorch eager, ONNX Runtime); weights: MB the engine reads "
        "per batch, and at what GB/s; "
        "roofline: the least time, from those weights over the bandwidth measured at the model's footprint "
        "or the multiply-adds over a tuned product's peak (one core each; linear in threads), and the "
        "fraction of it the engine reaches; subnormals flushed to zero (FTZ/DAZ) for every runtime\n"
    )
    columns = "batch threads PyTorch ORT engine vs_PyTorch vs_ORT ideal efficiency_vs_ORT weights GB/s"
    columns = f"{columns} roofline of_roofline active"
    columns = columns.split()
    print("| " + " | ".join(c.replace("_", " ") for c in columns) + " |")
    print("|---" * len(columns) + "|")
    for r in records:
        active = "/".join(f"{a:.3f}" for a in r.active_fraction)
        print(
            f"| {r.batch} | {r.threads} | {r.dense_ms:.4f} | {r.ort_ms:.4f} | {r.engine_ms:.4f} | "
            f"{r.speedup:.2f} | {r.speedup_vs_ort:.2f} | {r.ideal_speedup:.2f} | {r.efficiency_vs_ort:.2f} | "
            f"{r.weights_mb:.3f} | {r.weights_gbps:.1f} | {r.roofline_ms:.3g} ({r.bound}) | "
            f"{r.of_roofline:.2f} | {active} |"
        )


def cmd_parity(args) -> None:
    from condnet.bench.parity import sweep

    result = sweep(args.cases, args.seed, args.threads)
    print(f"{result.cases} cases, seed {args.seed}; covered:")
    for name, counter in result.counts.items():
        print(f"  {name}: " + ", ".join(f"{value} {n}" for value, n in sorted(counter.items(), key=str)))
    print(f"{len(result.mismatches)} mismatches")
    for line in result.mismatches[:20]:
        print(f"  {line}")
    if result.mismatches:
        raise CondnetError(f"the engine differs from the PyTorch model in {len(result.mismatches)} case(s)")


def cmd_experts(args) -> None:
    import json
    from dataclasses import asdict

    from condnet.report import experts

    reports = [(str(run), experts.run_report(run, args.split)) for run in args.run_dirs]
    if args.json:
        print(json.dumps({"runs": {name: asdict(r) for name, r in reports}}, indent=1))
        return
    print("\n\n".join(experts.markdown(name, r) for name, r in reports))


def cmd_search(args) -> None:
    from condnet.search.study import run_search

    outputs = run_search(args.space, args.trials, args.out, args.storage, args.workers, args.threads,
                         log=print, cluster=args.cluster)  # fmt: skip
    print(f"{outputs.trials} trials in {outputs.csv}; the Pareto set (validation error, batch-1 latency):")
    for row in outputs.pareto:
        params = ", ".join(f"{k[6:]}={v}" for k, v in row.items() if k.startswith("param:"))
        print(f"  trial {row['trial']}: {100 * row['valid_error']:.2f} %, {row['b1_latency_us']:.1f} us "
              f"({row['latency_from']}); {params}")  # fmt: skip


def cmd_frontier(args) -> None:
    from condnet.reproduce.frontier import run_frontier

    found = run_frontier(
        args.dataset, args.configs, args.seeds, args.out or Path("runs") / "frontier" / args.dataset,
        args.report, args.workers, args.threads, args.timing_repeats, "condnet " + " ".join(sys.argv[1:]),
        log=print, cluster=args.cluster, retime=args.retime,
    )  # fmt: skip
    print(f"wrote {args.report}/{args.dataset}.csv, .md and .png")
    for line in found:
        print(f"- {line}")


def cmd_sparsify(args) -> None:
    from condnet.sparsify.convert import SparsifyOptions, sparsify

    options = SparsifyOptions(args.layer, args.block_size, args.k, args.router_epochs, args.router_lr,
                              args.profile_examples, args.seed)  # fmt: skip
    found = sparsify(args.run_dir, args.out, options, args.set or [], args.force, _progress_callbacks)
    print(
        f"{args.out}: validation error dense {100 * found['dense_valid_error']:.2f} %, converted "
        f"{100 * found['converted_valid_error']:.2f} % (router recall {found['router_valid_recall']:.3f}), "
        f"fine-tuned {100 * found['finetuned_valid_error']:.2f} %; test error dense "
        f"{100 * found['dense_test_error']:.2f} %, fine-tuned {100 * found['finetuned_test_error']:.2f} %"
    )


def cmd_versus(args) -> None:
    from condnet.engine.timing import machine
    from condnet.reproduce.versus import ROUNDS, versus

    gated, dense, verdict = versus(args.gated_run, args.dense_run, args.repeats)
    print(f"timed in turn, {ROUNDS} rounds each (medians), on one core of {machine()}")
    for name, c in (("gated", gated), ("dense", dense)):
        print(f"{name}: {c.run_dir}: test error {100 * c.test_error:.2f} %, batch 1 {c.latency_us:.1f} us "
              f"({c.latency_from}), test pass at batch 50 {c.pass_ms:.1f} ms")  # fmt: skip
    print(f"verdict: {verdict}")


def _run_table(args, table) -> None:
    from condnet.reproduce.command import run_table
    from condnet.reproduce.tables import select_rows

    table = select_rows(table, args.rows)
    outputs = run_table(
        table,
        args.seeds,
        out=args.out or Path("runs") / args.command / table.name,
        report_dir=args.report,
        workers=args.workers,
        threads=args.threads,
        overrides=args.set or [],
        data_dir=args.data_dir,
        timing_repeats=args.timing_repeats,
        retime=args.retime,
        config_dir=args.configs,
        command="condnet " + " ".join(sys.argv[1:]),
        log=print,
        cluster=args.cluster,
    )
    print(outputs.markdown.read_text())
    print(f"wrote {outputs.csv}, {outputs.markdown}, {outputs.figure}")
    if outputs.failures:
        raise CondnetError(f"{len(outputs.failures)} run(s) failed; see {outputs.markdown}")


def cmd_reproduce(args) -> None:
    from condnet.reproduce.tables import TABLES

    _run_table(args, TABLES[args.table])


def cmd_ablate(args) -> None:
    from condnet.reproduce.tables import ABLATIONS

    _run_table(args, ABLATIONS[args.ablation])


def _table_options(p: argparse.ArgumentParser) -> None:
    from condnet.reproduce.tables import CONFIG_DIR

    p.add_argument("--seeds", type=int, default=3, help="seeds per row (0 .. N-1)")
    p.add_argument("--rows", type=lambda text: text.split(","), help="only these rows (comma-separated)")
    p.add_argument("--out", type=Path, help="run directories (default: runs/<command>/<name>)")
    p.add_argument("--report", type=Path, help="where the CSV, markdown and figure go (default: --out)")
    p.add_argument("--workers", type=_positive_int, default=1, help="runs trained in parallel")
    p.add_argument("--threads", type=_positive_int, help="cores per worker (default: all cores / workers)")
    p.add_argument("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
    p.add_argument("--data-dir", help="local directory with the dataset's files (sets data.dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override every row's config")
    p.add_argument("--timing-repeats", type=_positive_int, default=15, help="timed repeats per run (median)")
    p.add_argument("--retime", action="store_true", help="time finished runs again")
    p.add_argument("--configs", type=Path, default=CONFIG_DIR, help="the configs/ directory")


DESCRIPTION = """Conditional computation in neural networks (Bengio et al., arXiv 1511.06297): hidden layers
cut into blocks that a per-layer gate (a policy or router) switches on per example, trained with the
network, and run by a block-sparse CPU engine. Train, evaluate, time and compare runs; reproduce the
paper's tables; search and chart the error-latency front of gated against dense nets.
`condnet COMMAND --help` describes each command."""


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it has none or says it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return text
        if "default" in text or not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        return f"{text} (default: {shown})".strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="condnet", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: _add_parser(*a, formatter_class=_Help, **k)  # defaults in every help

    p = sub.add_parser("train", help="train a model from a TOML config into a run directory")
    p.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.lr_net=0.01"
    )
    p.add_argument("--seed", type=_seed, help="random seed (overrides the config's)")
    p.add_argument("--out", type=Path, help="run directory to create")
    p.add_argument(
        "--force", action="store_true", help="replace the run at --out (when the new one has finished)"
    )
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a killed or failed run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="recompute a run's test metrics from its checkpoint")
    p.add_argument("run_dir", type=Path, help="a finished run directory")
    p.add_argument("--mode", choices=["sample", "threshold"], help="default: both")
    p.add_argument("--seed", type=_seed, help="seed of the sample-mode draws (default: the run's seed)")
    p.add_argument("--engine", action="store_true", help="also the inference engine's threshold-mode error")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "bench", help="time the engine against the dense twin in PyTorch and ONNX Runtime, same weights"
    )
    p.add_argument(
        "run_dir", type=Path, nargs="?", help="a trained run (uses its test inputs and real masks)"
    )
    p.add_argument("--arch", type=_int_list, help="synthetic model, e.g. 3072,640,640,10")
    p.add_argument("--block-size", type=_int_list, default=[64], help="one value or one per hidden layer")
    p.add_argument("--density", type=_densities, default=[0.18], help="one value or one per hidden layer")
    p.add_argument(
        "--kind", choices=["condnet", "nn"], default="condnet", help="synthetic model: gated, or dense (nn)"
    )
    p.add_argument("--batch", type=_int_list, default=[1, 50, 256], help="batch sizes, comma-separated")
    p.add_argument("--threads", type=_int_list, default=[1], help="thread counts, comma-separated")
    p.add_argument(
        "--mode", choices=["sample", "threshold"], default="sample", help="how the masks are decided"
    )
    p.add_argument("--repeats", type=_positive_int, default=15, help="timed repeats (the median is reported)")
    p.add_argument("--seed", type=_seed, default=0, help="the synthetic weights' and the masks' draws")
    p.add_argument(
        "--weights", choices=["fp32", "bf16", "int8"], default="fp32",
        help="the engine's layer weights: fp32 (exact), bf16 (half the bytes) or int8 (a quarter, with "
        "quantized layer inputs; its roofline's peak is ONNX Runtime's int8 product's); the baselines "
        "stay fp32",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help='print {"records": [...]} instead of a table')
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("search", help="Optuna search: validation error and batch-1 latency, the Pareto set")
    p.add_argument("space", type=Path, help="SPACE.toml (see condnet.search.space)")
    p.add_argument(
        "--trials", type=_positive_int, default=100, help="trials in the study, resumed ones included"
    )
    p.add_argument("--workers", type=_positive_int, default=1, help="trials trained in parallel")
    p.add_argument("--out", type=Path, required=True, help="the trials' runs, search.csv and pareto.csv")
    p.add_argument("--storage", help="Optuna journal file (default: OUT/journal.log), or a study database: "
                   "postgresql://USER@HOST:PORT/DB")  # fmt: skip
    p.add_argument("--threads", type=_positive_int, help="cores per worker (default: all cores / workers)")
    p.add_argument("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "frontier", help="train chosen configs on fresh seeds: gated against dense, error and latency"
    )
    p.add_argument("dataset", help="the data.name every config must have, e.g. mnist")
    p.add_argument(
        "--configs", type=Path, required=True, help="a directory of configs (chosen on validation)"
    )
    p.add_argument("--seeds", type=_positive_int, default=5, help="fresh seeds per config (100, 101, ...)")
    p.add_argument("--out", type=Path, help="run directories (default: runs/frontier/DATASET)")
    p.add_argument("--report", type=Path, default=Path("docs/frontier"), help="where DATASET.csv/.md/.png go")
    p.add_argument("--workers", type=_positive_int, default=1, help="runs trained in parallel")
    p.add_argument("--threads", type=_positive_int, help="cores per worker (default: all cores / workers)")
    p.add_argument("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
    p.add_argument("--timing-repeats", type=_positive_int, default=15, help="timed repeats per run (median)")
    p.add_argument(
        "--retime", action="store_true",
        help="time every run here again, not only the new ones (seeds added later: one timing step)",
    )  # fmt: skip
    p.set_defaults(func=cmd_frontier)

    p = sub.add_parser("sparsify", help="gate a trained dense run after the fact: group, route, fine-tune")
    p.add_argument("run_dir", type=Path, help="a finished dense run (model.kind = nn)")
    p.add_argument("--out", type=Path, required=True, help="converted/, finetuned/ and sparsify.json go here")
    p.add_argument("--layer", type=int, default=-1, help="the hidden layer to gate (negative: from the last)")
    p.add_argument("--block-size", type=_positive_int, default=16, help="units per block")
    p.add_argument("--k", type=_positive_int, default=4, help="blocks computed per example")
    p.add_argument("--router-epochs", type=int, default=5, help="epochs fitting the router, network frozen")
    p.add_argument("--router-lr", type=float, default=1e-3, help="the router's rate (fit and fine-tuning)")
    p.add_argument("--profile-examples", type=_positive_int, default=10_000, help="examples that group units")
    p.add_argument("--seed", type=_seed, default=0, help="grouping and router initialisation")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the fine-tuning config")
    p.add_argument("--force", action="store_true", help="replace a finished sparsify at --out")
    p.set_defaults(func=cmd_sparsify)

    p = sub.add_parser("versus", help="one gated run against one dense run: errors, latencies, verdict")
    p.add_argument("gated_run", type=Path, help="a finished gated run")
    p.add_argument("dense_run", type=Path, help="a finished dense run (model.kind = nn)")
    p.add_argument("--repeats", type=_positive_int, default=15, help="timed repeats (the median is reported)")
    p.set_defaults(func=cmd_versus)

    p = sub.add_parser("parity", help="a randomized sweep: the engine against the PyTorch model, same masks")
    p.add_argument("--cases", type=_positive_int, default=10_000, help="random cases to check")
    p.add_argument(
        "--seed", type=_seed, default=0, help="the sweep's seed (a case is reproduced by seed and number)"
    )
    p.add_argument("--threads", type=_positive_int, default=2, help="at most this many engine threads")
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("reproduce", help="run a paper table for several seeds; CSV, markdown and Pareto plot")
    p.add_argument("table", choices=["mnist", "cifar10", "svhn"], help="the paper's table")
    _table_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("ablate", help="run one of the paper's ablations for several seeds, with its plot")
    p.add_argument(
        "ablation", choices=["no-regularizers", "lambda-v", "lambda-s"], help="the paper's ablation"
    )
    _table_options(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser(
        "experts", help="how a gated last layer's router splits the data; router against random and oracle"
    )
    p.add_argument("run_dirs", nargs="+", type=Path, help="finished runs whose last hidden layer is gated")
    p.add_argument("--split", choices=["valid", "test"], default="valid", help="the examples analysed")
    p.add_argument("--json", action="store_true", help='print {"runs": {RUN: report}} instead of tables')
    p.set_defaults(func=cmd_experts)

    p = sub.add_parser("summary", help="print a table comparing finished runs")
    p.add_argument("run_dirs", nargs="+", type=Path, help="finished run directories")
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
    except OSError as exc:  # a file or directory the user named cannot be read or written
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"condnet: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in MODULE_EXTRA:
            raise
        extra = "bench" if args.command == "bench" else MODULE_EXTRA[exc.name]
        print(
            f"condnet: error: `condnet {args.command}` needs {exc.name}, which is not installed: "
            f"pip install 'condnet[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

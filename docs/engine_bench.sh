#!/usr/bin/env bash
# The engine benchmarks behind docs/RESULTS.md section 2 (issues: inference engine; engine against
# ONNX Runtime; the engine at the memory limit). Run on an otherwise idle machine.
# Usage: bash docs/engine_bench.sh [OUT_DIR] (default: runs/engine_bench; one JSON per benchmark).
# Records made by an older condnet (no roofline fields) print "-" there.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/engine_bench}
mkdir -p "$OUT"
bench() {  # name, then condnet bench arguments
  name=$1; shift
  [ -s "$OUT/$name.json" ] && return  # resumable: a finished benchmark is kept
  .venv/bin/condnet bench "$@" --batch 1,50,256 --threads 1,2 --json > "$OUT/$name.json.partial"
  mv "$OUT/$name.json.partial" "$OUT/$name.json"
  echo "$name done"
}
# Dense nets (no policies) through the engine, against the same net in ONNX Runtime and PyTorch.
bench dense-784-16-10        --arch 784,16,10 --kind nn
bench dense-784-64-10        --arch 784,64,10 --kind nn
bench dense-784-256-10       --arch 784,256,10 --kind nn
bench dense-784-1024-1024-10 --arch 784,1024,1024,10 --kind nn
bench dense-3072-640-640-10  --arch 3072,640,640,10 --kind nn
# The paper's architectures (CIFAR-10 Figure 2, SVHN Figure 4) at their published tau and at 0.18.
bench cifar-1536-64-tau1_24   --arch 3072,1536,1536,10 --block-size 64 --density 0.041667
bench cifar-1536-64-d018      --arch 3072,1536,1536,10 --block-size 64 --density 0.18
bench cifar-256-512-16-tau1_16 --arch 3072,256,512,10 --block-size 16 --density 0.0625
bench cifar-256-512-16-d018   --arch 3072,256,512,10 --block-size 16 --density 0.18
bench cifar-640-64-tau1_16    --arch 3072,640,640,10 --block-size 64 --density 0.0625
bench cifar-640-64-d018       --arch 3072,640,640,10 --block-size 64 --density 0.18
bench cifar-640-64-d100       --arch 3072,640,640,10 --block-size 64 --density 1.0
bench svhn-208-128-16-tau1_11 --arch 3072,208,128,10 --block-size 16 --density 0.0909
bench svhn-208-128-16-d018    --arch 3072,208,128,10 --block-size 16 --density 0.18
bench svhn-432-112-16-tau1_25 --arch 3072,432,112,10 --block-size 16 --density 0.04
bench svhn-432-112-16-tau1_7  --arch 3072,432,112,10 --block-size 16 --density 0.142857
bench svhn-432-112-16-d018    --arch 3072,432,112,10 --block-size 16 --density 0.18
bench svhn-800-704-32-tau1_22 --arch 3072,800,704,10 --block-size 32 --density 0.045455
bench svhn-800-704-32-d018    --arch 3072,800,704,10 --block-size 32 --density 0.18
# The trained MNIST models (docs/mnist_core.sh), with the masks they draw on test inputs.
for run in runs/mnist_core/condnet-s0 runs/default; do
  [ -f "$run/metrics.json" ] && bench "trained-$(basename "$run")" "$run"
done
# One markdown table of every record.
.venv/bin/python - "$OUT" <<'PY'
import json, pathlib, sys
paths = sorted(pathlib.Path(sys.argv[1]).glob("*.json"))
print("Machine:", ", ".join(sorted({json.loads(p.read_text()).get("machine", "?") for p in paths})))
bandwidths = [json.loads(p.read_text()).get("memory_gbps", 0) for p in paths]
print(f"One core reads memory at {min(bandwidths):.1f}-{max(bandwidths):.1f} GB/s (each benchmark measures it).\n")
print("| model | active | batch | threads | PyTorch ms | ORT ms | engine ms | vs PyTorch | vs ORT | ideal "
      "| efficiency vs ORT | weights MB | GB/s | roofline ms | of roofline |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in paths:
    for r in json.loads(path.read_text())["records"]:
        active = "/".join(f"{a:.3f}" for a in r["active_fraction"])
        roofline = f"{r['roofline_ms']:.3g} ({r['bound']}) | {r['of_roofline']:.2f}" if "bound" in r else "- | -"
        print(f"| {path.stem} | {active} | {r['batch']} | {r['threads']} | {r['dense_ms']:.4f} | "
              f"{r['ort_ms']:.4f} | {r['engine_ms']:.4f} | {r['speedup']:.2f} | {r['speedup_vs_ort']:.2f} | "
              f"{r['ideal_speedup']:.2f} | {r['efficiency_vs_ort']:.2f} | {r['weights_mb']:.3f} | "
              f"{r['weights_gbps']:.1f} | {roofline} |")
PY

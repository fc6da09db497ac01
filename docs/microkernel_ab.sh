#!/usr/bin/env bash
# The micro-kernel at a git revision against the working tree's, in one process (docs/microkernel_ab.c):
# per case the time of one call at REV, then at the working tree and how many times faster ("x").
# Usage: bash docs/microkernel_ab.sh REV (e.g. a4fa217); BF16=1 bash ... for bfloat16 weights. Needs gcc;
# run on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bash docs/microkernel_ab.sh REV}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git show "$rev:src/condnet/engine/microkernel.c" > "$tmp/before.c"
for name in before after; do
  source=$tmp/before.c
  [ "$name" = after ] && source=src/condnet/engine/microkernel.c
  gcc -O3 -Wno-psabi -shared -fPIC "$source" -o "$tmp/$name.so"  # setup.py's flags
done
gcc -O2 docs/microkernel_ab.c -o "$tmp/ab" -ldl
.venv/bin/python -c "from condnet.engine.timing import machine; print(machine())"
echo "before: $rev; after: the working tree"
# m k width blocks: gated first layers (groups of 1-12 examples, 3072 x 64 tiles, streamed and in cache),
# a second layer's 640 x 64 tiles, dense layers of 16-640 outputs at batch 50 and 256
while read -r m k width blocks; do
  "$tmp/ab" "$m" "$k" "$width" "$blocks" "$tmp/before.so" "$tmp/after.so"
done <<'CASES'
1 3072 64 10
2 3072 64 10
3 3072 64 10
6 3072 64 10
9 3072 64 10
12 3072 64 10
9 640 64 10
2 640 64 1
3 640 64 1
8 640 64 1
1 3072 64 1
3 3072 64 1
9 3072 64 1
12 3072 64 1
9 640 64 1
9 64 64 1
20 3072 64 1
11 640 32 1
9 640 48 1
50 784 16 1
256 784 16 1
50 784 64 1
256 784 64 1
50 784 256 1
256 784 256 1
50 640 640 1
CASES

#!/bin/sh
# Seeds the fuzz corpus with every compose file of tests/compose_corpus, the inputs of fixed
# crashes (fuzz/regressions) and the shared public corpus, when present.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/fuzz/corpus/compose"
mkdir -p "$out"
n=0
for f in "$root"/tests/compose_corpus/*/repo/compose/*/compose.yaml \
         "$root"/fuzz/regressions/compose-* \
         "$root"/../shared/corpus/compose-examples/*/compose.y*ml; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    cp "$f" "$out/seed-$n.yaml"
done
echo "seeded $n files into $out"

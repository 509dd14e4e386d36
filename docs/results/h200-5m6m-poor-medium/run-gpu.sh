#!/bin/bash
# One GPU call: a benchmark's cells as three parallel processes (one per variant, each its own
# run under results-gpu/), every process stopped after LIMIT seconds; what finished comes back in
# $OUT: logs, runs.tgz (run dirs without diffusion checkpoints and synthetic datasets) and the
# last diffusion checkpoint of each model, split into parts of <= 15 MiB.
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
ROOT=$PWD
export PYTHONPATH=$ROOT/src:$ROOT/.gpu/site
export EAQ_CACHE_DIR=$ROOT/.gpu/cache
export XLA_PYTHON_CLIENT_MEM_FRACTION=${MEMFRAC:-0.25}
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
MAP=${MAP:-5m_vs_6m}; Q=${Q:-medium}; SEEDS=${SEEDS:-5}; LIMIT=${LIMIT:-480}; PRESET=${PRESET:-fast}
EXTRA=${EXTRA:-}
start=$(date +%s)
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import jax, jaxmarl, flashbax, tyro; print('jax', jax.__version__, jax.devices())" 2>&1 | grep -v -i submodule; } > "$OUT/log-original.txt"
for v in original eaq-noq eaq; do
  ( timeout "$LIMIT" $PY -m eaq.cli benchmark --maps "$MAP" --qualities "$Q" --variants "$v" --seeds "$SEEDS" \
      --preset "$PRESET" --no-synthetic-cql --run "gpu-$v" --out results-gpu $EXTRA >> "$OUT/log-$v.txt" 2>&1
    echo "rc=$? after $(( $(date +%s) - start )) s; $(date -u)" >> "$OUT/log-$v.txt" ) &
done
wait
tar czf "$OUT/runs.tgz" --exclude='*/diffusion-*/checkpoints' --exclude='*/cells/*/checkpoints' --exclude='*/synthetic-*-s[0-9]' results-gpu
for v in eaq eaq-noq; do
  grep -q '^rc=0 ' "$OUT/log-$v.txt" && continue  # finished: its checkpoint is not needed
  d=$(ls -d results-gpu/gpu-$v/stages/*/diffusion-$v/checkpoints 2>/dev/null | head -1)
  [ -n "$d" ] || continue
  last=$(ls "$d" | grep -E '^[0-9]+$' | sort -n | tail -1)
  [ -n "$last" ] || continue
  tar cf - "$d/$last" "$(dirname "$d")/config.json" "$(dirname "$d")/metrics.json" | split -b 15M - "$OUT/ckpt-$v.tar.part-"
done
ls -la "$OUT"; echo "total $(( $(date +%s) - start )) s"

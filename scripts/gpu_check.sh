#!/usr/bin/env bash
# The prepared GPU check, for a machine with a CUDA GPU, PyTorch and possibly JAX (TensorFlow not needed):
#   1. the CUDA tests, 2. `twincnn compare` on cuda, tuned and idiomatic, 3. the PyTorch benchmarks on cuda.
# Usage: OUT=/some/dir bash scripts/gpu_check.sh     (results land in $OUT)
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch, numpy, sklearn; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'numpy', numpy.__version__)"
} 2>&1 | tee "$OUT/env.txt"

echo "== 1. tests (CUDA paths included)"
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_devices.py tests/test_models.py tests/test_spec.py \
  -k "not tensorflow" 2>&1 | tail -15 | tee "$OUT/tests.txt"

echo "== 2. compare on cuda: tuned (PyTorch: whole step in a CUDA graph), then idiomatic (eager)"
FRAMEWORKS=torch
$PY -c "import jax, sys; sys.exit(not jax.devices('gpu'))" 2>/dev/null && FRAMEWORKS=torch,jax
for variant in tuned idiomatic; do
  rm -rf /tmp/cmp_$variant
  timeout 240 $PY -m twincnn compare --frameworks $FRAMEWORKS --device cuda --variant $variant --epochs 5 \
    --no-progress --out /tmp/cmp_$variant 2>&1 | tail -22 | tee "$OUT/compare_$variant.txt"
  cp /tmp/cmp_$variant/results.json "$OUT/compare_$variant.json" 2>/dev/null
done

echo "== 3. PyTorch benchmarks on cuda"
TWINCNN_BENCH_DEVICE=cuda timeout 300 $PY -m pytest -q -p no:cacheprovider tests/benchmarks/test_benchmarks.py --benchmark-only \
  -k "torch" --benchmark-json="$OUT/bench_cuda.json" --benchmark-columns=median,iqr,rounds \
  --benchmark-group-by=group 2>&1 | tail -60 | tee "$OUT/bench.txt"

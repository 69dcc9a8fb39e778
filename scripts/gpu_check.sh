#!/usr/bin/env bash
# The prepared GPU check, for a machine with a CUDA GPU, PyTorch and JAX (TensorFlow not needed). Each part
# has its own time limit and writes its own file, so a part that fails or runs long leaves the others' results.
#   1. the tests that touch the device paths, 2. `twincnn compare` on cuda, tuned then idiomatic,
#   3. JAX's tuned loop per step vs one lax.scan per epoch, 4. the benchmark suite on cuda.
# Usage: OUT=/some/dir bash scripts/gpu_check.sh     (results land in $OUT; about 8 minutes on an H200)
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{
  date -u; nproc
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch, numpy; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'numpy', numpy.__version__)"
  $PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} 2>&1 | tee "$OUT/tests.txt"

echo "== 1. tests: CUDA paths of both twins, the JAX twin, PyTorch-JAX equivalence (TensorFlow's tests skip)"
timeout 150 $PY -m pytest -q -p no:cacheprovider -rfEs --benchmark-disable tests/test_devices.py tests/test_jax.py \
  tests/test_transfer.py tests/test_models.py tests/test_interface.py 2>&1 | tee -a "$OUT/tests.txt" | tail -40

echo "== 2. compare on cuda: tuned (PyTorch: whole step in a CUDA graph; JAX: jitted step, data resident), then idiomatic"
for variant in tuned idiomatic; do
  rm -rf /tmp/cmp_$variant
  timeout 180 $PY -m twincnn compare --frameworks torch,jax --device cuda --variant $variant --epochs 4 \
    --no-progress --out /tmp/cmp_$variant 2>&1 | tee -a "$OUT/compare.txt" | tail -30
  cp /tmp/cmp_$variant/results.json "$OUT/compare_$variant.json" 2>/dev/null
done

echo "== 3. JAX tuned: one dispatch per step vs one lax.scan per epoch"
timeout 60 $PY scripts/jax_scan_vs_step.py --device cuda --epochs 4 2>&1 | tee "$OUT/jax_scan.txt" | tail -15

echo "== 4. benchmarks on cuda"
TWINCNN_BENCH_DEVICE=cuda timeout 120 $PY -m pytest -q -p no:cacheprovider tests/benchmarks/test_benchmarks.py \
  --benchmark-only --benchmark-max-time=0.5 --benchmark-min-rounds=5 --benchmark-json="$OUT/bench_cuda.json" \
  --benchmark-columns=median,iqr,rounds --benchmark-group-by=group 2>&1 | tee "$OUT/bench.txt" | tail -60

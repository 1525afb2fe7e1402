#!/usr/bin/env bash
# One lent GPU's checks for issue 12, in one call (device time is short): the CUDA tests, the
# benchmark table on CUDA, and a charlm training of MINUTES minutes on the GPU; every log lands in
# $OUT (default /tmp/gpu_check). Run from the repository root on a machine with torch + CUDA
# (and Triton, for the "cuda-fused" backend). Each part has its own time limit, so one that
# hangs does not take the others with it.
#
#   bash benchmarks/gpu_check.sh            # tests + bench --quick + a 3-minute charlm
#   MINUTES=1 PARTS="tests" bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu_check}
MINUTES=${MINUTES:-3}
PARTS=${PARTS:-"tests bench charlm"}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}

{
  date -u
  nvidia-smi -L
  $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(), torch.cuda.get_device_name())"
  $PY -c "import triton; print('triton', triton.__version__)" || echo "no triton: the variants run on torch operations"
  nproc; cat /proc/loadavg
} 2>&1 | tee "$OUT/machine.txt"

for part in $PARTS; do
  start=$(date +%s)
  case $part in
    tests)
      timeout 200 $PY -m pytest -o addopts="" -q -p no:cacheprovider -x tests/test_cuda.py \
        tests/layers/test_backends.py tests/cli/test_device_flags.py tests/streaming/test_stream.py \
        2>&1 | tee "$OUT/tests.log" | tail -25 ;;
    bench)
      timeout 170 $PY -m rnnkit bench --device cuda --quick 2>&1 | tee "$OUT/bench.md" ;;
    charlm)
      rm -rf /tmp/gpu_check_charlm
      timeout $((MINUTES * 60 + 60)) $PY -m rnnkit train charlm --device cuda --max-minutes "$MINUTES" \
        --out /tmp/gpu_check_charlm --no-progress 2>&1 | tail -5 | tee "$OUT/charlm.log"
      cp /tmp/gpu_check_charlm/summary.json "$OUT/charlm_summary.json" 2>/dev/null
      tail -3 /tmp/gpu_check_charlm/metrics.jsonl > "$OUT/charlm_metrics_tail.jsonl" 2>/dev/null ;;
  esac
  echo "[$part: $(( $(date +%s) - start )) s]" | tee -a "$OUT/machine.txt"
done

#!/usr/bin/env bash
# On a machine with a GPU, from the repository root: does the GPU compute what the CPU does, and
# how fast does it train? (result/gpu_check/ and result/gpu_speed/ hold what it gave us.)
#
#   bash tools/gpu_check.sh [LOG]      (default: gpu_check.txt)
#
# 1. the GPU test (IEEE FP32 convolutions within 1e-5 of float64, TF32 not);
# 2. main.py -e on the authors' ResNet-20 checkpoints ($APOT_DATA/apot-official-res20, CIFAR-10
#    in $APOT_DATA/cifar10, default ../shared/data): the README's numbers, up to GPU rounding;
# 3. CIFAR/bench.py --epochs 3 (whole epochs on random images, FP32 and 4-bit): as main.py
#    trains by default, with --tf32, and with --compile-model (minutes of compilation first),
#    each also as JSON: gpu_bench.json, gpu_benchtf32.json, gpu_benchcompilemodel.json.
set -euo pipefail
data=${APOT_DATA:-../shared/data}
export PYTHONUNBUFFERED=1
quiet() { grep --line-buffered -v Warning || true; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import torch; print('torch', torch.__version__)"
  python -m pytest -q -p no:cacheprovider -m cuda -rs tests/ 2>&1 | tail -2
  for b in 32 4 3 2; do
    echo "== $b-bit, the authors' checkpoint, main.py -e"
    python CIFAR/main.py -a res20 --bit "$b" -e --data "$data/cifar10" --no-download \
      --init "$data/apot-official-res20/res20_${b}bit.pth.tar" --no-progress 2>&1 | quiet
  done
  for flags in "" "--tf32" "--compile-model"; do
    echo "== CIFAR/bench.py --steps 30 --epochs 3 $flags"
    start=$SECONDS
    python CIFAR/bench.py --steps 30 --epochs 3 $flags \
      --summary "gpu_bench$(tr -d ' -' <<< "$flags").json" 2>&1 | quiet
    echo "($((SECONDS - start)) s)"
  done
} 2>&1 | tee "${1:-gpu_check.txt}"

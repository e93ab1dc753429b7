#!/usr/bin/env bash
# The authors' CIFAR recipe: FP32 -> 4 -> 3 -> 2 bits, each quantized stage initialised (--init)
# from the previous stage's best checkpoint (APOT_SPEC.md section 4).
#
#   CIFAR/run.sh ARCH DATA_DIR [-id GPU_IDS] [any main.py arguments...]
#   CIFAR/run.sh res20 ../shared/data/cifar10
#   CIFAR/run.sh res20 ./data -id 0,1 --epochs 2      # a smoke run
#
# Run folders are result/<arch>_<bit>bit under the current directory. Restartable: a stage
# with a checkpoint is resumed from it (main.py trains only the epochs still missing, so a
# finished stage is skipped), so rerunning this script after an interruption continues the
# chain where it stopped.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ARCH DATA_DIR [-id GPU_IDS] [main.py arguments...]" >&2
  exit 2
fi
arch=$1 data=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python}

stage() {  # bit lr wd [init-from-bit]
  local bit=$1 lr=$2 wd=$3 from=$4
  shift 4
  local dir="result/${arch}_${bit}bit"
  local args=(-a "$arch" --bit "$bit" --lr "$lr" --wd "$wd" --data "$data" --save-dir "$dir")
  if [ -n "$from" ]; then
    args+=(--init "result/${arch}_${from}bit/model_best.pth.tar")
  fi
  if [ -f "$dir/checkpoint.pth.tar" ]; then
    echo "== ${bit}-bit stage: continuing $dir/checkpoint.pth.tar"
    args+=(--resume "$dir/checkpoint.pth.tar")
  else
    echo "== ${bit}-bit stage: starting in $dir"
  fi
  "$python" "$here/main.py" "${args[@]}" "$@"
}

stage 32 0.1 5e-4 "" "$@"
stage 4 0.04 1e-4 32 "$@"
stage 3 0.04 1e-4 4 "$@"
stage 2 0.04 3e-5 3 "$@"

#!/usr/bin/env bash
# The authors' CIFAR recipe: FP32 -> 4 -> 3 -> 2 bits, each quantized stage initialised (--init)
# from the previous stage's best checkpoint (docs/training.md, docs/method.md).
#
#   CIFAR/run.sh ARCH DATA_DIR [--runs DIR] [-id GPU_IDS] [any main.py arguments...]
#   CIFAR/run.sh res20 ./data                        # your runs: result/res20_<bit>bit
#   CIFAR/run.sh res20 ./data -id 0,1 --epochs 2     # a smoke run
#
# Run folders are DIR/<arch>_<bit>bit, DIR = result by default (git-ignored: your runs are
# yours). The project's reference runs live in result/reference and are touched only when
# --runs names them. Restartable: a stage with a checkpoint is resumed from it (main.py trains
# only the epochs still missing, so a finished stage is skipped), so rerunning this script
# after an interruption continues the chain where it stopped.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ARCH DATA_DIR [--runs DIR] [-id GPU_IDS] [main.py arguments...]" >&2
  exit 2
fi
arch=$1 data=$2
shift 2
runs=result
extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--runs" ]; then
    [ $# -ge 2 ] || { echo "error: --runs needs a folder" >&2; exit 2; }
    runs=$2
    shift 2
  else
    extra+=("$1")
    shift
  fi
done
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python}

stage() {  # bit lr wd [init-from-bit]
  local bit=$1 lr=$2 wd=$3 from=$4
  local dir="$runs/${arch}_${bit}bit"
  local args=(-a "$arch" --bit "$bit" --lr "$lr" --wd "$wd" --data "$data" --save-dir "$dir")
  if [ -n "$from" ]; then
    args+=(--init "$runs/${arch}_${from}bit/model_best.pth.tar")
  fi
  if [ -f "$dir/checkpoint.pth.tar" ]; then
    echo "== $(stage_label "$bit") stage: continuing $dir/checkpoint.pth.tar"
    args+=(--resume "$dir/checkpoint.pth.tar")
  else
    echo "== $(stage_label "$bit") stage: starting in $dir"
  fi
  "$python" "$here/main.py" "${args[@]}" ${extra[@]+"${extra[@]}"}
}

stage_label() {
  if [ "$1" = 32 ]; then echo FP32; else echo "$1-bit"; fi
}

stage 32 0.1 5e-4 ""
stage 4 0.04 1e-4 32
stage 3 0.04 1e-4 4
stage 2 0.04 3e-5 3

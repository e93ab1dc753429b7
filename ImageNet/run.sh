#!/usr/bin/env bash
# The authors' published ImageNet recipes (docs/method.md): every bit-width starts from
# the ImageNet-pretrained full-precision weights; 100 epochs, SGD momentum 0.9, lr x0.1 at
# epochs 30/60/90; where the recipe has one, the lr moves linearly over the first 2,500
# iterations from its value at iteration 0 (--warmup-lr) to the base lr.
#
#   ImageNet/run.sh ARCH BIT DATA_DIR [any main.py arguments...]
#   ImageNet/run.sh resnet18 4 /imagenet
#   TORCHRUN_ARGS="--nproc_per_node 8" ImageNet/run.sh resnet18 4 /imagenet
#   TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8" ImageNet/run.sh ...
#   PRETRAINED=/weights/resnet18-f37072fd.pth ImageNet/run.sh resnet18 2 /imagenet   # offline
#   ImageNet/run.sh resnet18 2 /imagenet --init result/resnet18_4bit/model_best.pth.tar
#     (chained from a higher bit-width: --init replaces the pretrained weights)
#
# Without TORCHRUN_ARGS it runs `python ImageNet/main.py` (one process; add -id 0,1,... for
# DataParallel). The run folder is result/<arch>_<bit>bit; rerunning resumes it.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 ARCH BIT DATA_DIR [main.py arguments...]" >&2
  exit 2
fi
arch=$1 bit=$2 data=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)

case "$arch:$bit" in
  resnet18:5|resnet18:4|resnet18:3) recipe=(-b 1024 --lr 0.01 --warmup-lr 0.025 --wd 1e-4) ;;
  resnet18:2) recipe=(-b 1024 --lr 0.04 --warmup-lr 0.010 --wd 2e-5) ;;
  resnet34:5|resnet34:4|resnet34:3) recipe=(-b 1024 --lr 0.1 --warmup-lr 0.025 --wd 1e-4) ;;
  resnet34:2) recipe=(-b 1024 --lr 0.1 --warmup-lr 0.025 --wd 2e-5) ;;
  resnet50:5|resnet50:4|resnet50:3) recipe=(-b 512 --lr 0.05 --wd 1e-4) ;;
  resnet50:2) recipe=(-b 512 --lr 0.05 --wd 2.5e-4) ;;
  *) echo "no published recipe for $arch at $bit bits (archs: resnet18/34/50, bits 2..5)" >&2
     exit 2 ;;
esac

# The pretrained FP32 weights, unless the arguments chain from another run with --init.
start=(--pretrained "${PRETRAINED:-torchvision}")
for a in "$@"; do
  case $a in --init|--init=*) start=() ;; esac
done

dir="result/${arch}_${bit}bit"
args=(-a "$arch" --bit "$bit" --data "$data" --epochs 100 --lr-steps 30 60 90
      --warmup-iters 2500 "${recipe[@]}" ${start[@]+"${start[@]}"} --save-dir "$dir")
if [ -f "$dir/checkpoint.pth.tar" ]; then
  args+=(--resume "$dir/checkpoint.pth.tar")
fi
if [ -n "${TORCHRUN_ARGS:-}" ]; then
  # shellcheck disable=SC2086  # the launcher's arguments are meant to split
  exec torchrun $TORCHRUN_ARGS "$here/main.py" "${args[@]}" "$@"
fi
exec "${PYTHON:-python}" "$here/main.py" "${args[@]}" "$@"

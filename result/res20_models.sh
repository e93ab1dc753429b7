#!/usr/bin/env bash
# The quantized ResNet-20 models that result/int_res20 and result/onnx_res20 export, one line
# each: NAME CHECKPOINT BIT. The authors' released 4/3/2-bit checkpoints, then each of our
# reference stages once its 300 epochs are logged. Run from the repository root.
set -euo pipefail
official=${APOT_DATA:-../shared/data}/apot-official-res20
for b in 4 3 2; do
  echo "authors_${b}bit $official/res20_${b}bit.pth.tar $b"
done
for b in $(python CIFAR/results_table.py --finished); do
  [ "$b" = 32 ] || echo "ours_${b}bit result/reference/res20_${b}bit/model_best.pth.tar $b"
done

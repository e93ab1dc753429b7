#!/usr/bin/env bash
# Export the authors' ResNet-20 checkpoints and ours to ONNX with integer convolutions, and run
# each with ONNX Runtime on the whole CIFAR-10 test set beside the float fake-quant checkpoint.
# Run from the repository root; writes <name>.txt here (the .onnx files are not kept).
set -euo pipefail
root=${APOT_DATA:-../shared/data}
official=$root/apot-official-res20
data=$root/cifar10
out=result/onnx_res20
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # name checkpoint bit
  python CIFAR/export.py onnx "$2" --bit "$3" --out "$tmp/$1.onnx" > "$out/$1.txt"
  python CIFAR/export.py ort "$tmp/$1.onnx" --data "$data" --compare "$2" --bit "$3" \
    --no-progress >> "$out/$1.txt"
}
for b in 4 3 2; do
  run "authors_${b}bit" "$official/res20_${b}bit.pth.tar" "$b"
done
for b in $(python CIFAR/results_table.py --finished); do  # ours: stages with all 300 epochs
  [ "$b" = 32 ] || run "ours_${b}bit" "result/reference/res20_${b}bit/model_best.pth.tar" "$b"
done

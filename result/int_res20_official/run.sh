#!/usr/bin/env bash
# Export the authors' ResNet-20 checkpoints to integer codes and run the integer path on the
# whole CIFAR-10 test set beside the float fake-quant model. Run from the repository root.
set -euo pipefail
ck=${APOT_DATA:-../shared/data}/apot-official-res20
out=result/int_res20_official
for b in 4 3 2; do
  python CIFAR/export.py export "$ck/res20_${b}bit.pth.tar" --bit "$b" --out "$out/res20_${b}bit.apot" \
    > "$out/export_${b}bit.txt"
  python CIFAR/export.py infer "$out/res20_${b}bit.apot" --data "${APOT_DATA:-../shared/data}/cifar10" \
    --compare "$ck/res20_${b}bit.pth.tar" --no-progress > "$out/infer_${b}bit.txt"
done

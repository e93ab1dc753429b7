#!/usr/bin/env bash
# Export the authors' ResNet-20 checkpoints and our finished reference stages to integer codes
# (.apot) and run the integer path on the whole CIFAR-10 test set beside the float fake-quant
# model. Run from the repository root; writes <name>.apot, <name>_export.txt, <name>_infer.txt.
set -euo pipefail
root=${APOT_DATA:-../shared/data}
data=$root/cifar10
out=result/int_res20
run() {  # name checkpoint bit
  python CIFAR/export.py export "$2" --bit "$3" --out "$out/$1.apot" > "$out/$1_export.txt"
  python CIFAR/export.py infer "$out/$1.apot" --data "$data" --compare "$2" --no-progress \
    > "$out/$1_infer.txt"
}
for b in 4 3 2; do
  run "authors_${b}bit" "$root/apot-official-res20/res20_${b}bit.pth.tar" "$b"
done
for b in $(python CIFAR/results_table.py --finished); do  # ours: stages with all 300 epochs
  [ "$b" = 32 ] || run "ours_${b}bit" "result/reference/res20_${b}bit/model_best.pth.tar" "$b"
done

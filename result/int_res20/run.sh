#!/usr/bin/env bash
# Export the authors' ResNet-20 checkpoints and our finished reference stages
# (result/res20_models.sh) to integer codes (.apot) and run the integer path on the whole
# CIFAR-10 test set beside the float fake-quant model, in float32 and in float64. Run from the
# repository root; writes <name>.apot, <name>_export.txt and <name>_infer.txt here.
# With NAME arguments (res20_models.sh's names, e.g. ours_2bit) it runs
# only those models; the tables are rewritten from every log here either way.
set -euo pipefail
data=${APOT_DATA:-../shared/data}/cifar10
out=result/int_res20
run() {  # name checkpoint bit
  python CIFAR/export.py export "$2" --bit "$3" --out "$out/$1.apot" > "$out/$1_export.txt"
  python CIFAR/export.py infer "$out/$1.apot" --data "$data" --compare "$2" --float64 \
    --no-progress > "$out/$1_infer.txt"
}
bash result/res20_models.sh "$@" | while read -r name ckpt bit; do
  run "$name" "$ckpt" "$bit" < /dev/null
done
python tools/export_tables.py --update  # the tables of docs/export.md and docs/onnx.md

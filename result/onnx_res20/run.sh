#!/usr/bin/env bash
# Export the authors' ResNet-20 checkpoints and our finished reference stages
# (result/res20_models.sh) to ONNX in both exact forms (float convs on integers, the default;
# ConvInteger), and run each with ONNX Runtime at its default optimizations on the whole
# CIFAR-10 test set beside the float fake-quant checkpoint, in float32 and in float64.
# Run from the repository root; writes <name>.txt (exact) and <name>_integer.txt here (the
# .onnx files are not kept).
# With NAME arguments (res20_models.sh's names, e.g. ours_2bit) it runs
# only those models; the tables are rewritten from every log here either way.
set -euo pipefail
data=${APOT_DATA:-../shared/data}/cifar10
out=result/onnx_res20
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # name checkpoint bit
  for convs in exact integer; do
    log=$out/$1$([ $convs = exact ] || echo _integer).txt
    python CIFAR/export.py onnx "$2" --bit "$3" --convs $convs --out "$tmp/$1.onnx" > "$log"
    python CIFAR/export.py ort "$tmp/$1.onnx" --data "$data" --compare "$2" --bit "$3" \
      --float64 --no-progress >> "$log"
  done
}
bash result/res20_models.sh "$@" | while read -r name ckpt bit; do
  run "$name" "$ckpt" "$bit" < /dev/null
done
python tools/export_tables.py --update  # the tables of docs/export.md and docs/onnx.md

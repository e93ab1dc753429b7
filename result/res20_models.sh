#!/usr/bin/env bash
# The quantized ResNet-20 models that result/int_res20 and result/onnx_res20 export, one line
# each: NAME CHECKPOINT BIT. The authors' released 4/3/2-bit checkpoints, then each of our
# reference stages once its 300 epochs are logged. With NAME arguments, only those lines, in
# the order given (a name not in the list is an error). Run from the repository root.
set -euo pipefail
official=${APOT_DATA:-../shared/data}/apot-official-res20
models() {
  for b in 4 3 2; do
    echo "authors_${b}bit $official/res20_${b}bit.pth.tar $b"
  done
  for b in $(python tools/results_table.py --finished); do
    [ "$b" = 32 ] || echo "ours_${b}bit result/reference/res20_${b}bit/model_best.pth.tar $b"
  done
}
list=$(models)
[ $# -gt 0 ] || { echo "$list"; exit 0; }
selected=""  # every name is checked before any line is printed, so a bad one runs nothing
for name in "$@"; do
  line=$(awk -v name="$name" '$1 == name' <<< "$list")
  if [ -z "$line" ]; then
    names=$(cut -d' ' -f1 <<< "$list" | xargs)
    echo "error: no model named '$name' in res20_models.sh; the models: $names" >&2
    exit 1
  fi
  selected+="$line"$'\n'
done
printf '%s' "$selected"

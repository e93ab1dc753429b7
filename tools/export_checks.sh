#!/usr/bin/env bash
# The exported ResNet-20 models on the whole CIFAR-10 test set, beside the float fake-quant
# checkpoint they came from, in float32 and in float64. The models: the authors' released
# 4/3/2-bit checkpoints, then each of our reference stages once its 300 epochs are logged.
# Run from the repository root:
#
#   bash tools/export_checks.sh models [NAME...]    list them, one line each: NAME CHECKPOINT BIT
#   bash tools/export_checks.sh integer [NAME...]   integer codes (.apot) and the shift-add path:
#                                                   result/int_res20/<name>{.apot,_export.txt,
#                                                   _infer.txt,.json}
#   bash tools/export_checks.sh onnx [NAME...]      ONNX in both exact forms (float convs on
#                                                   integers, the default; ConvInteger) under ONNX
#                                                   Runtime's default optimizations:
#                                                   result/onnx_res20/<name>{,_integer}.{txt,json}
#
# NAMEs (e.g. ours_2bit) select models, in the order given; a name not in the list is an error
# before anything runs. Each .txt is what the commands print, each .json the same numbers for
# programs (--summary); the docs' tables are rewritten from every .json either way.
set -euo pipefail
data=${APOT_DATA:-../shared/data}
models() {
  for b in 4 3 2; do
    echo "authors_${b}bit $data/apot-official-res20/res20_${b}bit.pth.tar $b"
  done
  for b in $(python tools/results_table.py --finished); do
    [ "$b" = 32 ] || echo "ours_${b}bit result/reference/res20_${b}bit/model_best.pth.tar $b"
  done
}
select_models() {  # every name is checked before any line is printed
  local list line selected="" name
  list=$(models)
  [ $# -gt 0 ] || { echo "$list"; return; }
  for name in "$@"; do
    line=$(awk -v name="$name" '$1 == name' <<< "$list")
    if [ -z "$line" ]; then
      echo "error: no model named '$name' in the export checks; the models:" \
           "$(cut -d' ' -f1 <<< "$list" | xargs)" >&2
      return 1
    fi
    selected+="$line"$'\n'
  done
  printf '%s' "$selected"
}
integer() {  # name checkpoint bit
  local out=result/int_res20
  rm -f "$out/$1.json"
  python CIFAR/export.py export "$2" --bit "$3" --out "$out/$1.apot" --summary "$out/$1.json" \
    > "$out/$1_export.txt"
  python CIFAR/export.py infer "$out/$1.apot" --data "$data/cifar10" --compare "$2" --float64 \
    --no-progress --summary "$out/$1.json" > "$out/$1_infer.txt"
}
onnx() {  # name checkpoint bit; the .onnx files are not kept
  local convs log
  for convs in exact integer; do
    log=result/onnx_res20/$1$([ $convs = exact ] || echo _integer)
    rm -f "$log.json"
    python CIFAR/export.py onnx "$2" --bit "$3" --convs $convs --out "$tmp/$1.onnx" \
      --summary "$log.json" > "$log.txt"
    python CIFAR/export.py ort "$tmp/$1.onnx" --data "$data/cifar10" --compare "$2" --bit "$3" \
      --float64 --no-progress --summary "$log.json" >> "$log.txt"
  done
}
command=${1:-}
case $command in
  models) shift; select_models "$@"; exit ;;
  integer|onnx) shift ;;
  *) echo "error: usage: bash tools/export_checks.sh models|integer|onnx [NAME...]" >&2; exit 2 ;;
esac
selected=$(select_models "$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
while read -r name ckpt bit; do
  "$command" "$name" "$ckpt" "$bit" < /dev/null
done <<< "$selected"
python tools/export_tables.py --update  # the tables of docs/export.md and docs/onnx.md

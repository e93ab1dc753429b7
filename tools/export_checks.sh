#!/usr/bin/env bash
# The exported CIFAR-10 models on the whole test set, beside the float fake-quant checkpoint
# they came from, in float32 and in float64. The models: for ResNet-20 the authors' released
# 4/3/2-bit checkpoints, then each of our reference stages of the network once its 300 epochs
# are logged. Run from the repository root (ARCH: res20, the default, or res56):
#
#   bash tools/export_checks.sh models [--arch ARCH] [NAME...]   list them, one line each:
#                                                   NAME CHECKPOINT BIT
#   bash tools/export_checks.sh integer [--arch ARCH] [NAME...]  integer codes (.apot) and the
#                                                   shift-add path: result/int_ARCH/<name>{.apot,
#                                                   _export.txt,_infer.txt,.json}
#   bash tools/export_checks.sh onnx [--arch ARCH] [NAME...]     ONNX in both exact forms (float
#                                                   convs on integers, the default; ConvInteger)
#                                                   under ONNX Runtime's default optimizations:
#                                                   result/onnx_ARCH/<name>{,_integer}.{txt,json}
#
# NAMEs (e.g. ours_2bit) select models, in the order given; a name not in the list is an error
# before anything runs. Each .txt is what the commands print, each .json the same numbers for
# programs (--summary); the docs' tables are rewritten from every .json either way.
set -euo pipefail
data=${APOT_DATA:-../shared/data}
models() {  # the authors released ResNet-20 checkpoints only
  if [ "$arch" = res20 ]; then
    for b in 4 3 2; do
      echo "authors_${b}bit $data/apot-official-res20/res20_${b}bit.pth.tar $b"
    done
  fi
  for b in $(python tools/results_table.py --arch "$arch" --finished); do
    [ "$b" = 32 ] || echo "ours_${b}bit result/reference/${arch}_${b}bit/model_best.pth.tar $b"
  done
}
select_models() {  # every name is checked before any line is printed
  local list line selected="" name
  list=$(models)
  [ $# -gt 0 ] || { [ -z "$list" ] || echo "$list"; return; }
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
  local out=result/int_$arch
  mkdir -p "$out"
  rm -f "$out/$1.json"
  python CIFAR/export.py export "$2" -a "$arch" --bit "$3" --out "$out/$1.apot" \
    --summary "$out/$1.json" > "$out/$1_export.txt"
  python CIFAR/export.py infer "$out/$1.apot" --data "$data/cifar10" --compare "$2" --float64 \
    --no-progress --summary "$out/$1.json" > "$out/$1_infer.txt"
}
onnx() {  # name checkpoint bit; the .onnx files are not kept
  local convs log
  mkdir -p "result/onnx_$arch"
  for convs in exact integer; do
    log=result/onnx_$arch/$1$([ $convs = exact ] || echo _integer)
    rm -f "$log.json"
    python CIFAR/export.py onnx "$2" -a "$arch" --bit "$3" --convs $convs --out "$tmp/$1.onnx" \
      --summary "$log.json" > "$log.txt"
    python CIFAR/export.py ort "$tmp/$1.onnx" --data "$data/cifar10" --compare "$2" --bit "$3" \
      --float64 --no-progress --summary "$log.json" >> "$log.txt"
  done
}
usage="usage: bash tools/export_checks.sh models|integer|onnx [--arch res20|res56] [NAME...]"
command=${1:-}
case $command in
  models|integer|onnx) shift ;;
  *) echo "error: $usage" >&2; exit 2 ;;
esac
arch=res20
if [ "${1:-}" = --arch ]; then
  case ${2:-} in
    res20|res56) arch=$2; shift 2 ;;
    *) echo "error: --arch takes res20 or res56, got '${2:-}' ($usage)" >&2; exit 2 ;;
  esac
fi
[ "$command" != models ] || { select_models "$@"; exit; }
selected=$(select_models "$@")
if [ -z "$selected" ]; then
  echo "error: no $arch model to export yet: no quantized stage has its 300 epochs" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
while read -r name ckpt bit; do
  "$command" "$name" "$ckpt" "$bit" < /dev/null
done <<< "$selected"
python tools/export_tables.py --update  # the tables of docs/export.md and docs/onnx.md

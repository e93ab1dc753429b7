#!/bin/bash
# On an H200, after 5_run.sh: does --compile-model pay for ResNet-56 as it does for ResNet-20?
# Training steps eager against the whole model compiled (minutes of compilation first), main.py's
# default layout. Output: $OUT/6_h200.txt and the bench's summary.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=16
o=${OUT:-.}
{
echo "== CIFAR/bench.py --arch res56 --compiled 32 4 --steps 30 --bn-groups 2"
start=$SECONDS
timeout 280 python3 CIFAR/bench.py --arch res56 --compiled 32 4 --steps 30 --bn-groups 2 \
  --summary "$o/6_h200_res56_compile.json" 2>&1 | grep --line-buffered -v Warn
echo "($((SECONDS - start)) s, compilation included)"
} 2>&1 | tee "$o/6_h200.txt"

#!/bin/bash
# On an H200, after 4_run.sh: NCHW against channels_last where Tensor Cores or CUDA graphs might
# change the answer: ResNet-56 steps with --tf32, and ResNet-20 steps with --compile-model (what
# docs/speed.md recommends on one GPU; minutes of compilation first). Output: $OUT/5_h200.txt
# and the benches' summaries.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=16
o=${OUT:-.}
quiet() { grep --line-buffered -v Warn || true; }
{
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== CIFAR/bench.py --arch res56 --layouts 32 4 --steps 30 --bn-groups 2 --tf32"
timeout 70 python3 CIFAR/bench.py --arch res56 --layouts 32 4 --steps 30 --bn-groups 2 --tf32 \
  --summary "$o/5_h200_res56_layouts_tf32.json" 2>&1 | quiet
echo "== CIFAR/bench.py --arch res20 --layouts 32 4 --steps 30 --compile-model"
start=$SECONDS
timeout 290 python3 CIFAR/bench.py --arch res20 --layouts 32 4 --steps 30 --compile-model \
  --summary "$o/5_h200_res20_layouts_compile_model.json" 2>&1 | quiet
echo "($((SECONDS - start)) s, compilation included)"
} 2>&1 | tee "$o/5_h200.txt"

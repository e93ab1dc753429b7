#!/bin/bash
# On an H200, today's code: the GPU test; our ResNet-56 FP32 weights evaluated on the GPU; the
# training step in NCHW against channels_last (main.py's default), IEEE FP32, for ResNet-56 as
# docs/speed.md's CPU table times it and for ResNet-20; ImageNet ResNet-18 steps in IEEE FP32
# NCHW and as a training run would take them (--amp --channels-last). The CIFAR-10 test set is
# read from scratch/cifar10 (git-ignored). Output: $OUT/4_h200.txt and the benches' summaries.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=16
o=${OUT:-.}
quiet() { grep --line-buffered -v Warn || true; }
{
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda -rs tests/test_training.py 2>&1 | tail -2
echo "== CIFAR/main.py -a res56 --bit 32 -e --init result/reference/res56_32bit/model_best.pth.tar"
timeout 60 python3 CIFAR/main.py -a res56 --bit 32 -e --data scratch/cifar10 --no-download \
  --init result/reference/res56_32bit/model_best.pth.tar --no-progress 2>&1 | quiet
echo "== CIFAR/bench.py --arch res56 --layouts 32 4 3 2 --steps 30 --bn-groups 2"
timeout 180 python3 CIFAR/bench.py --arch res56 --layouts 32 4 3 2 --steps 30 --bn-groups 2 \
  --summary "$o/4_h200_res56_layouts.json" 2>&1 | quiet
echo "== CIFAR/bench.py --arch res20 --layouts 32 4 --steps 30"
timeout 60 python3 CIFAR/bench.py --arch res20 --layouts 32 4 --steps 30 \
  --summary "$o/4_h200_res20_layouts.json" 2>&1 | quiet
for flags in "" "--amp --channels-last"; do
  echo "== ImageNet/bench.py --batch 256 --steps 10 $flags"
  timeout 50 python3 ImageNet/bench.py --batch 256 --steps 10 $flags 2>&1 | quiet
done
} 2>&1 | tee "$o/4_h200.txt"

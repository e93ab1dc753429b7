#!/bin/bash
# main.py --compile-model on the GPU: the authors' 4-bit checkpoint evaluated through the
# compiled model, then CIFAR/bench.py's steps and whole epochs with --compile-model.
# Needs scratch/ (git-ignored) holding the CIFAR-10 test batch and the authors' checkpoints.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=16
nvidia-smi --query-gpu=name --format=csv,noheader
echo "== 4-bit, authors' checkpoint, main.py -e --compile-model"
start=$SECONDS
python3 CIFAR/main.py -a res20 --bit 4 -e --compile-model \
  --init scratch/official/res20_4bit.pth.tar --data scratch/cifar10 --no-download --no-progress 2>&1 | grep --line-buffered -v Warn
echo "($((SECONDS - start)) s, compilation included)"
echo "== python3 CIFAR/bench.py --steps 30 --epochs 3 --compile-model"
python3 CIFAR/bench.py --steps 30 --epochs 3 --compile-model 2>&1 | grep --line-buffered -v Warn

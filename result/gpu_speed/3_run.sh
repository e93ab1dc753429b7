#!/bin/bash
# Whole epochs with main.py --compile-model on the GPU (2_run.sh's bench was cut off), then the
# same bench without the flag as the baseline on the same machine in the same call.
# Random images of CIFAR-10's size: no data needs to travel. Output: $OUT/3_h200.txt.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=16
{
nvidia-smi --query-gpu=name --format=csv,noheader
echo "== python3 CIFAR/bench.py --steps 30 --epochs 3 --compile-model"
start=$SECONDS
timeout 420 python3 CIFAR/bench.py --steps 30 --epochs 3 --compile-model 2>&1 | grep --line-buffered -v Warn
echo "($((SECONDS - start)) s, compilation included)"
echo "== python3 CIFAR/bench.py --steps 30 --epochs 3"
start=$SECONDS
timeout 230 python3 CIFAR/bench.py --steps 30 --epochs 3 2>&1 | grep --line-buffered -v Warn
echo "($((SECONDS - start)) s)"
} 2>&1 | tee "${OUT:-.}/3_h200.txt"

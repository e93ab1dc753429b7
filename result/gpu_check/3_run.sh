#!/bin/bash
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider tests/test_training.py -rs 2>&1 | tail -2
for b in 32 4 3 2; do
  echo "== $b-bit, authors' checkpoint, main.py -e on the GPU"
  python3 CIFAR/main.py -a res20 --bit $b -e --init scratch/official/res20_${b}bit.pth.tar \
    --data scratch/cifar10 --no-download --no-progress 2>&1 | grep -v Warning
done
echo "== python3 CIFAR/bench.py --steps 50 --epochs 3"
python3 CIFAR/bench.py --steps 50 --epochs 3
echo "== python3 CIFAR/bench.py --steps 50 --epochs 3 --tf32"
python3 CIFAR/bench.py --steps 50 --epochs 3 --tf32

#!/bin/bash
# On a GPU machine: the authors' checkpoints evaluated through main.py, then CIFAR/bench.py.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch; print('torch', torch.__version__)"
for b in 32 4 3 2; do
  echo "== $b-bit, authors' checkpoint"
  python3 CIFAR/main.py -a res20 --bit $b -e --init scratch/official/res20_${b}bit.pth.tar \
    --data scratch/cifar10 --no-download --no-progress 2>&1 | grep -v Warning
done
python3 CIFAR/bench.py --steps 50 --epochs 3

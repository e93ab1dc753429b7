"""Our ResNet-20 models loaded through torch.hub, on the full CIFAR-10 test set, beside the
accuracy their model_best.pth.tar records (the README table's best). From the repository root:

    python tools/evaluate_hub.py ../shared/data/cifar10 > result/hub/res20.txt
"""
import sys

import torch

from CIFAR.data import Normalize, load_cifar


def main(data):
    _, _, x, y = load_cifar(data, download=False, train=False)
    normalize = Normalize("cifar10", "cpu")
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; "
          "full CIFAR-10 test set")
    for bit in (32, 4, 3, 2):
        model = torch.hub.load(".", "apot_resnet20", source="local", bit=bit, pretrained=True)
        best = torch.load(f"result/reference/res20_{bit}bit/model_best.pth.tar",
                          weights_only=True)["best_prec"]
        with torch.no_grad():
            hits = sum((model(normalize(x[i:i + 100])).argmax(1) == y[i:i + 100]).sum().item()
                       for i in range(0, len(x), 100))
        print(f"apot_resnet20 bit={bit}: top-1 {100 * hits / len(x):.2f}; model_best.pth.tar "
              f"records {best:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

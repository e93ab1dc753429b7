"""Export a quantized CIFAR ResNet to integer APoT codes or ONNX, and run either.

    python CIFAR/export.py export CKPT --bit 4 [-a res20] [--out model.apot]
    python CIFAR/export.py infer model.apot --data DIR [--compare CKPT [--float64]] [--limit N]
    python CIFAR/export.py onnx CKPT --bit 4 [-a res20] [--out model.onnx] [--convs C]
    python CIFAR/export.py ort model.onnx --data DIR [--compare CKPT [--float64]] [--limit N]

The machinery (file layout, integer conv, operation counts) is apot/export.py's; this file
names the CIFAR models and reads the CIFAR test set.
"""
from apot.export import Variant, main as export_main
from CIFAR.data import Normalize, load_cifar
from CIFAR.quant_layer import QuantConv2d
from CIFAR.resnet import ARCHS


def eval_batches(args, num_classes):
    dataset = "cifar10" if num_classes == 10 else "cifar100"
    _, _, x, y = load_cifar(args.data, dataset, download=False, train=False)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    normalize = Normalize(dataset, "cpu")
    b = args.batch
    return len(x), ((normalize(x[s:s + b]).contiguous(), y[s:s + b]) for s in range(0, len(x), b))


VARIANT = Variant(name="CIFAR", archs=ARCHS, default_arch="res20", conv_type=QuantConv2d,
                  default_classes=10, image_size=32, eval_batches=eval_batches)


def main(argv=None):
    export_main(VARIANT, argv)


if __name__ == "__main__":
    main()

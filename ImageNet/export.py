"""Export a quantized ImageNet ResNet to integer APoT codes or ONNX, and run either.

    python ImageNet/export.py export CKPT [-a resnet18] [--bit 4] [--quant apot] [--out model.apot]
    python ImageNet/export.py infer model.apot --data DIR [--compare CKPT] [--limit N]
    python ImageNet/export.py onnx CKPT [-a resnet18] [--bit 4] [--out model.onnx] [--convs C]
    python ImageNet/export.py ort model.onnx --data DIR [--compare CKPT] [--limit N]

The machinery (file layout, integer conv, operation counts) is apot/export.py's, the same as
the CIFAR models'; this file names the ImageNet models and reads DIR/val/ (an ImageFolder) with
main.py's validation transform (--image-size, 224 by default, the side of the centre crop and
of the image that the operation counts are for).
The integer path runs its integer sums as float64 matrix products on the CPU, slower than the
float fake-quant model: --limit is for a check, the whole validation set for patience.
"""

import torch

from apot.export import Variant, main as export_main
from apot.errors import UserError
from ImageNet.data import IMAGE_SIZE, eval_loader, image_folder
from ImageNet.quant_layer import QuantConv2d
from ImageNet.resnet import ARCHS


def eval_batches(args, num_classes):
    val = image_folder(args.data, "val", args.image_size)
    if len(val.classes) != num_classes:
        raise UserError(f"{args.data}/val has {len(val.classes)} class folders, the model "
                        f"{num_classes} classes")
    if args.limit:
        val = torch.utils.data.Subset(val, range(min(args.limit, len(val))))
    return len(val), eval_loader(val, args.batch, workers=0)


VARIANT = Variant(name="ImageNet", archs=ARCHS,
                  default_arch="resnet18", conv_type=QuantConv2d, default_classes=1000,
                  image_size=IMAGE_SIZE, eval_batches=eval_batches, resizable=True)


def main(argv=None):
    export_main(VARIANT, argv)


if __name__ == "__main__":
    main()

"""Top-1 of an exported model on the test images beside the float fake-quant model it came
from, and that model's float64 twin: how many predictions agree (`infer` and `ort`)."""
import copy
import math

import torch
from tqdm import tqdm

from apot.errors import UserError


@torch.no_grad()
def float64_twin(model):
    """The fake-quant model in float64, holding the quantized weights its float32 quantizers
    give. Float32 rounding in the fake-quant convolutions moves a few activations across a
    level midpoint, differently on each machine (it depends on the summation order); in float64
    those flips all but vanish, so the twin is the reference no machine moves. The weights stay
    as float32 chose them: a latent weight exactly on a midpoint in float32 (our 2-bit ResNet-20
    has one) takes the other level in float64, which would be another model, not the same one
    computed more exactly."""
    twin = copy.deepcopy(model)
    weights = {name: m.quantized_weight() for name, m in twin.named_modules()
               if hasattr(m, "quantized_weight")}
    twin.double()
    for name, w in weights.items():
        twin.get_submodule(name).quantized_weight = lambda w=w.double(): w
    return twin


@torch.no_grad()
def compare(predict, float_model, name, args, variant, num_classes):
    """Top-1 of predict (images -> logits) on the test images, and with a float model, its
    top-1 and how many predictions agree; with args.float64, the same for its float64_twin.
    Prints them and returns the counts: {images, correct, float: {correct, agree}, float64:
    {correct, agree, agree_with_float}} (the references that ran)."""
    if args.float64 and float_model is None:
        raise UserError("--float64 runs the --compare model in float64: give --compare CKPT")
    refs = {}  # line label -> (fake-quant model, dtype)
    if float_model is not None:
        refs["float"] = (float_model, torch.float32)
        if args.float64:
            refs["float64"] = (float64_twin(float_model), torch.float64)
    n, batches = variant.eval_batches(args, num_classes)
    ok = float_agree = 0
    ref_ok, agree = dict.fromkeys(refs, 0), dict.fromkeys(refs, 0)
    for images, target in tqdm(batches, total=math.ceil(n / args.batch),
                               disable=args.no_progress):
        pred = predict(images).argmax(1)
        ok += (pred == target).sum().item()
        ref_preds = {key: model(images.to(dtype)).argmax(1) for key, (model, dtype) in refs.items()}
        for key, ref_pred in ref_preds.items():
            ref_ok[key] += (ref_pred == target).sum().item()
            agree[key] += (ref_pred == pred).sum().item()
        if args.float64:
            float_agree += (ref_preds["float"] == ref_preds["float64"]).sum().item()
    print(f"{name}: top-1 {100 * ok / n:.2f} on {n} test images")
    for key in refs:
        print(f"{key} fake-quant model: top-1 {100 * ref_ok[key] / n:.2f}; predictions agree on "
              f"{agree[key]} of {n} ({100 * agree[key] / n:.2f}%)"
              + (f", with the float model's on {float_agree}" if key == "float64" else ""))
    counts = {"images": n, "correct": ok}
    for key in refs:
        counts[key] = {"correct": ref_ok[key], "agree": agree[key]}
    if args.float64:
        counts["float64"]["agree_with_float"] = float_agree
    return counts

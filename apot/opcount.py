"""Operation counts of the integer model for one image: per layer, the float multiplications a
float model does against the shifts and additions of the integer path."""
import torch
import torch.nn as nn

from apot.intmodel import IntConv


def cost_report(int_model, image_size):
    """Per layer, for one image: float multiplications vs the integer path's shifts/adds."""
    rows = []
    hooks = []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(module, IntConv):
                o, c, k = module.w_int.shape[0], module.w_int.shape[1], module.w_int.shape[2]
                mults = output.shape[2] * output.shape[3] * o * c * k * k
                rows.append((name, mults, module.ops["shifts"], module.ops["adds"], 0))
            else:
                w = module.weight
                per_out = w[0].numel()
                positions = output[0].numel() // w.shape[0]
                n = positions * w.shape[0] * per_out
                rows.append((name + " (8-bit)", n, 0, 0, n))
        return hook

    for name, m in int_model.named_modules():
        if isinstance(m, (IntConv, nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(record(name)))
    with torch.no_grad():
        int_model(torch.zeros(1, 3, image_size, image_size))
    for h in hooks:
        h.remove()
    return rows


def print_cost(rows, image_size):
    print(f"operations for one {image_size}x{image_size} image:")
    print(f"{'layer':28s} {'float mults':>12s} {'APoT shifts':>12s} {'APoT adds':>12s} "
          f"{'8-bit mults':>12s}")
    for name, mults, shifts, adds, m8 in rows:
        print(f"{name:28s} {mults:12,d} {shifts:12,d} {adds:12,d} {m8:12,d}")
    tot = [sum(r[i] for r in rows) for i in range(1, 5)]
    print(f"{'total':28s} {tot[0]:12,d} {tot[1]:12,d} {tot[2]:12,d} {tot[3]:12,d}")
    q = sum(r[1] for r in rows if r[4] == 0)
    print(f"quantized convs: {q:,d} float multiplications become {tot[1]:,d} shifts and "
          f"{tot[2]:,d} additions; the 8-bit first/last layers keep {tot[3]:,d} multiplications")

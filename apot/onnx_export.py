"""APoT models as ONNX files with integer convolutions, run by ONNX Runtime.

Every APoT level set is integers over one denominator L (`apot.levels.level_integers`: 4, 10,
48 and 100 for B = 2..5), so a quantized conv is exactly an integer convolution:

    t = x * (2 L / alpha_a)                    float32, the activation scaled so that every
                                               midpoint between two levels is an integer M_j
    a = table[clip(ceil(t), 0, 2 L)]           uint8 level integer: t > M_j <=> ceil(t) > M_j,
                                               so the table gives projection's nearest level,
                                               ties to the lower one
    y = ConvInteger(a, w) * (alpha_w / L_w * alpha_a / L_a)
                                               int8 weights (sign times level integer), int32
                                               accumulator, one float rescale

(the ceil agrees with the fake-quant model's comparison x / alpha > mid except within float32
rounding of a midpoint). The 8-bit first conv and last fc are float Conv / Gemm nodes holding the
fake-quant weights; BatchNorm, ReLU, the residual adds and the pooling stay float ONNX nodes.
Input: a float32 NCHW batch normalised with the training mean and std, dynamic batch size;
output: the logits. Opset 17, IR version 8 (ONNX Runtime's CPU provider runs ConvInteger with
uint8 activations and int8 weights).

The graph is read off the model by torch.fx (the quantized convs and 8-bit layers as leaves), so
both variants' ResNets export through the same code.
"""
import operator

import numpy as np
import torch
import torch.fx
import torch.nn as nn

from apot.eightbit import first_conv, last_fc, quantize_8bit
from apot.export import integer_terms
from apot.training import UserError

OPSET, IR_VERSION = 17, 8


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise UserError("ONNX export needs the onnx package: pip install -e .[onnx]") from e
    return onnx


def activation_table(a_ints):
    """uint8 level integer for every ceil(t) in 0..2L: the level above as many midpoints
    M_j = a_ints[j] + a_ints[j + 1] as lie strictly below it."""
    ints = np.asarray(a_ints, dtype=np.int64)
    mids = ints[1:] + ints[:-1]
    c = np.arange(2 * ints[-1] + 1)
    return ints[(c[:, None] > mids[None, :]).sum(1)].astype(np.uint8)


class _Graph:
    """Nodes and initializers of the graph being built, with unique names."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits = [], []

    def const(self, name, array):
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, out, **attrs):
        self.nodes.append(self.h.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _conv_attrs(conv):
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        raise UserError(f"cannot export {conv}: only ungrouped, undilated, zero-padded convs")
    ph, pw = conv.padding
    return dict(kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
                pads=[ph, pw, ph, pw])


def _check_fits(t, name):
    """uint8 activation integers and int8 weight integers: true of every APoT and uniform level
    set at 2 to 5 bits, not of plain power-of-two levels at 4 or more (down to 2^-15)."""
    if t["a_denom"] > 255 or t["w_denom"] > 127:
        raise UserError(f"{name}: {t['quant']} levels at {t['bit']} bits need integers up to "
                        f"{t['a_denom']} (activations) and {t['w_denom']} (weights), more than "
                        "uint8 / int8 hold: only apot and uniform levels, and pot up to 3 bits, "
                        "export to ONNX")


def _quant_conv(g, name, conv, x, float_convs, unsigned_weights=False):
    if float_convs:  # the benchmark's float twin: a plain FP32 conv of the same shape
        w = g.const(f"{name}.weight", conv.weight.detach().numpy())
        return g.op("Conv", [x, w], name, **_conv_attrs(conv))
    t = integer_terms(conv)
    _check_fits(t, name)
    L = t["a_denom"]
    sign = np.where(t["negative"].numpy(), -1, 1)
    w_int = (t["w_ints"][t["index"]].numpy() * sign).astype(np.int8)
    scaled = g.op("Mul", [x, g.const(f"{name}.act_scale",
                                     np.float32(2 * L / t["a_alpha"]))], f"{name}.scaled")
    up = g.op("Ceil", [scaled], f"{name}.ceil")
    clipped = g.op("Clip", [up, g.const(f"{name}.zero", np.float32(0)),
                            g.const(f"{name}.top", np.float32(2 * L))], f"{name}.clip")
    index = g.op("Cast", [clipped], f"{name}.index", to=g.onnx.TensorProto.INT32)
    a_int = g.op("Gather", [g.const(f"{name}.levels", activation_table(t["a_ints"])), index],
                 f"{name}.act_int")
    if unsigned_weights:  # the same integers, offset by the weight zero point ConvInteger removes
        weights = [g.const(f"{name}.weight_int", (w_int.astype(np.int16) + 128).astype(np.uint8)),
                   g.const(f"{name}.act_zero", np.uint8(0)),
                   g.const(f"{name}.weight_zero", np.uint8(128))]
    else:
        weights = [g.const(f"{name}.weight_int", w_int)]
    acc = g.op("ConvInteger", [a_int, *weights], f"{name}.acc", **_conv_attrs(conv))
    acc_f = g.op("Cast", [acc], f"{name}.acc_float", to=g.onnx.TensorProto.FLOAT)
    return g.op("Mul", [acc_f, g.const(f"{name}.rescale", np.float32(t["scale"]))], name)


def _module_node(g, name, m, x, conv_type, float_convs, unsigned_weights):
    """ONNX nodes for one leaf module applied to x; returns the output name."""
    if isinstance(m, conv_type):
        return _quant_conv(g, name, m, x, float_convs, unsigned_weights)
    if isinstance(m, first_conv):
        w = g.const(f"{name}.weight", quantize_8bit(m.weight).detach().numpy())
        ins = [x, w] + ([g.const(f"{name}.bias", m.bias.detach().numpy())] if m.bias is not None
                        else [])
        return g.op("Conv", ins, name, **_conv_attrs(m))
    if isinstance(m, last_fc):
        w = g.const(f"{name}.weight", quantize_8bit(m.weight).detach().numpy())
        return g.op("Gemm", [x, w, g.const(f"{name}.bias", m.bias.detach().numpy())], name,
                    transB=1)
    if isinstance(m, nn.BatchNorm2d):
        p = {k: v.detach().numpy() for k, v in (("scale", m.weight), ("bias", m.bias),
                                                ("mean", m.running_mean), ("var", m.running_var))}
        return g.op("BatchNormalization", [x] + [g.const(f"{name}.{k}", v) for k, v in p.items()],
                    name, epsilon=m.eps)
    if isinstance(m, nn.ReLU):
        return g.op("Relu", [x], name)
    if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and m.dilation == 1:
        k, s, p = m.kernel_size, m.stride, m.padding
        return g.op("MaxPool", [x], name, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
    if isinstance(m, nn.AvgPool2d) and not m.ceil_mode and m.padding == 0:
        k, s = m.kernel_size, m.stride
        return g.op("AveragePool", [x], name, kernel_shape=[k, k], strides=[s, s])
    if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
        return g.op("GlobalAveragePool", [x], name)
    raise UserError(f"cannot export layer {name} ({type(m).__name__}) to ONNX")


class _Tracer(torch.fx.Tracer):
    def __init__(self, leaves):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m, qualname):
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def _flatten_start(node):
    args = list(node.args[1:]) + [node.kwargs.get("start_dim")]
    return args[0] if args[0] is not None else 0


def to_onnx(model, conv_type, image_size, float_convs=False, unsigned_weights=False):
    """The ONNX ModelProto of a quantized model in eval mode. float_convs: every quantized conv
    a plain FP32 Conv instead, the float twin for speed comparisons. unsigned_weights: the int8
    weight integers stored as uint8 w + 128 with a weight zero point of 128 (the same integer
    convolution; ONNX Runtime's CPU kernels for uint8 x uint8 are faster on x86)."""
    onnx = _onnx()
    model = model.eval()
    graph_module = torch.fx.GraphModule(model, _Tracer((conv_type, first_conv, last_fc))
                                        .trace(model))
    g = _Graph(onnx)
    names = {}
    modules = dict(model.named_modules())
    out = None
    for node in graph_module.graph.nodes:
        name = node.name
        if node.op == "placeholder":
            names[node] = "input"
        elif node.op == "call_module":
            # named after the fx node: a module called twice (a block's ReLU) gets two names
            names[node] = _module_node(g, name, modules[node.target], names[node.args[0]],
                                       conv_type, float_convs, unsigned_weights)
        elif node.op == "call_function" and node.target in (operator.add, operator.iadd,
                                                             torch.add):
            names[node] = g.op("Add", [names[a] for a in node.args[:2]], name)
        elif (node.op == "call_function" and node.target is torch.flatten) or (
                node.op == "call_method" and node.target == "flatten"):
            names[node] = g.op("Flatten", [names[node.args[0]]], name,
                               axis=_flatten_start(node))
        elif node.op == "output":
            out = names[node.args[0]]
        else:
            raise UserError(f"cannot export {node.op} {node.target} to ONNX")
    h = onnx.helper
    num_classes = modules["fc"].out_features
    graph = h.make_graph(
        g.nodes, "apot_" + type(model).__name__, [h.make_tensor_value_info(
            "input", onnx.TensorProto.FLOAT, ["batch", 3, image_size, image_size])],
        [h.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["batch", num_classes])],
        g.inits)
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name="apot-reproduction")
    proto.ir_version = IR_VERSION
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    return proto

"""ONNX export with exact integer convolutions, run by ONNX Runtime: graph structure, exact convs
in both forms (float Conv on integers, ConvInteger), the projection lookup, what ONNX Runtime's
optimizer may do to the graph, whole models of both variants, bad inputs."""
import json
import re

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from apot.export import main as export_main  # noqa: E402
from apot.intmath import int_conv2d, integer_terms  # noqa: E402
from apot.levels import level_integers  # noqa: E402
from apot.onnx_export import (EXACT_FLOAT_SUM, _Graph, _quant_conv,  # noqa: E402
                               accumulator_bound, to_onnx)
from apot.projection import project_index  # noqa: E402
from apot.errors import UserError  # noqa: E402
from CIFAR.export import VARIANT as CIFAR, main as cifar_export  # noqa: E402
from CIFAR.quant_layer import QuantConv2d  # noqa: E402
from CIFAR.resnet import ARCHS  # noqa: E402
from helpers import (OFFICIAL, agreement, assert_one_line_error,  # noqa: E402
                      run_in_process)
from ImageNet.export import VARIANT as IMAGENET  # noqa: E402
from helpers import calibrated_imagenet_checkpoint, quant_conv  # noqa: E402


def session(proto, optimize=True):
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def one_conv_model(conv, shape, convs="integer"):
    """A graph holding one quantized conv: float input of `shape`; outputs its float output,
    the accumulator and the activation integers (floats in the exact form)."""
    g = _Graph(onnx)
    out = _quant_conv(g, "conv", conv, "input", convs)
    h, T = onnx.helper, onnx.TensorProto
    integer = any(n.op_type == "ConvInteger" for n in g.nodes)
    graph = h.make_graph(g.nodes, "one", [h.make_tensor_value_info("input", 1, shape)],
                         [h.make_tensor_value_info(out, 1, None),
                          h.make_tensor_value_info("conv.acc", T.INT32 if integer else T.FLOAT,
                                                   None),
                          h.make_tensor_value_info("conv.act_int",
                                                   T.UINT8 if integer else T.FLOAT, None)],
                         g.inits)
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


def test_apot_level_sets_are_integers_over_4_10_48_100():
    assert [level_integers(B)[1] for B in (2, 3, 4, 5)] == [4, 10, 48, 100]


@pytest.mark.parametrize("convs", ["exact", "integer"])
@pytest.mark.parametrize("channels", [1, 2, 4])
@pytest.mark.parametrize("quant, B", [("apot", 2), ("apot", 3), ("apot", 4), ("apot", 5),
                                       ("uniform", 3), ("uniform", 5), ("pot", 3)])
def test_projection_lookup_equals_projection_at_levels_midpoints_and_both_sides(quant, B,
                                                                               channels, convs):
    """alpha_a = 2L makes the graph's scale factor exactly 1, so the inputs below reach the
    ceil/clip/lookup unrounded: every level, every midpoint, 1/4 and one float32 ulp to either
    side of it, beyond both ends. 1, 2 and 4 channels: one, two and (at 2 bits) four activations
    per Gather index; each channel holds the values shifted by one, so that every position of a
    group sees every value. Reference: apot.projection's rule in float64."""
    conv = QuantConv2d(channels, 2, 1, bit=B, quant=quant)
    ints, L = level_integers(B, quant)
    with torch.no_grad():
        conv.act_alpha.fill_(2.0 * L)
    mids = (ints[1:] + ints[:-1]).double()  # midpoints on the 2L scale
    x = torch.cat([2.0 * ints.double(), mids, mids + 0.25, mids - 0.25,
                   torch.tensor([-3.0, -0.0, 2.0 * L + 5])]).float()
    x = torch.cat([x, torch.nextafter(mids.float(), torch.tensor(np.inf)),
                   torch.nextafter(mids.float(), torch.tensor(-np.inf))])
    x = torch.stack([x.roll(c) for c in range(channels)]).view(1, channels, 1, -1)
    proto = one_conv_model(conv, list(x.shape), convs)
    got = session(proto).run(None, {"input": x.numpy()})[2]
    expect = ints[project_index(x.double().clamp(max=2 * L) / (2 * L), mids / (2 * L))]
    assert got.tolist() == expect.tolist()


@pytest.mark.parametrize("convs", ["exact", "integer"])
@pytest.mark.parametrize("variant", ["CIFAR", "ImageNet"])
@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_one_conv_equals_the_integer_reference_exactly(bit, variant, convs):
    """Inputs on the activation levels times alpha and beyond the clip, so no element lies near
    a midpoint: the accumulator (int32, or float32 in the exact form) equals apot.intmath's
    integer conv, and the float output its accumulator times the layer's rescale, bit for
    bit."""
    torch.manual_seed(bit)
    conv = quant_conv(variant, bit, "apot", stride=2)
    t = integer_terms(conv)
    g = torch.Generator().manual_seed(0)
    pick = torch.randint(0, len(t["a_ints"]) + 2, (2, 8, 9, 9), generator=g)
    a_int = torch.cat([t["a_ints"], torch.tensor([0, t["a_denom"]])])[pick]
    x = a_int.float() / t["a_denom"] * t["a_alpha"]
    x[pick == len(t["a_ints"])] = -0.7  # below the first level
    x[pick == len(t["a_ints"]) + 1] = 3 * t["a_alpha"]  # above the clip
    sign = torch.where(t["negative"], -1, 1)
    acc, _ = int_conv2d(a_int, sign, t["w_ints"][t["index"]], conv.stride[0], conv.padding[0])
    out, onnx_acc, onnx_a = session(one_conv_model(conv, list(x.shape), convs)).run(
        None, {"input": x.numpy()})
    assert np.array_equal(onnx_a, a_int.numpy())
    assert np.array_equal(onnx_acc, acc.numpy())
    assert onnx_acc.dtype == (np.float32 if convs == "exact" else np.int32)
    assert np.array_equal(out, (acc.to(torch.float32) * t["scale"]).numpy())


def test_quantized_convs_are_conv_integer_on_uint8_and_int8():
    torch.manual_seed(0)
    model = ARCHS["res20"](bit=4)
    proto = to_onnx(model, QuantConv2d, 32, convs="integer")
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(proto.graph.value_info) + list(proto.graph.input)}
    types.update({i.name: i.data_type for i in proto.graph.initializer})
    convint = [n for n in proto.graph.node if n.op_type == "ConvInteger"]
    n_quant = sum(isinstance(m, QuantConv2d) for m in model.modules())
    assert len(convint) == n_quant == 20  # 18 block convs and 2 shortcut convs
    for node in convint:
        assert types[node.input[0]] == onnx.TensorProto.UINT8
        assert types[node.input[1]] == onnx.TensorProto.INT8
        assert types[node.output[0]] == onnx.TensorProto.INT32
    assert [n.name for n in proto.graph.node if n.op_type == "Conv"] == ["conv1"]  # 8-bit
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value or d.dim_param for d in
            proto.graph.output[0].type.tensor_type.shape.dim] == ["batch", 10]


def test_exact_graph_has_float_convs_of_int8_weights():
    torch.manual_seed(0)
    model = ARCHS["res20"](bit=4)
    proto = to_onnx(model, QuantConv2d, 32)
    inits = {i.name: i for i in proto.graph.initializer}
    producer = {n.output[0]: n for n in proto.graph.node}
    convs = [n for n in proto.graph.node if n.op_type == "Conv" and n.name != "conv1"]
    assert len(convs) == 20 and not any(n.op_type == "ConvInteger" for n in proto.graph.node)
    for node in convs:
        assert node.input[0].endswith(".act_int") and len(node.input) == 2
        cast = producer[node.input[1]]
        assert cast.op_type == "Cast" and inits[cast.input[0]].data_type == onnx.TensorProto.INT8
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) == 21


def test_onnx_runtime_optimizations_keep_every_quantized_conv_on_integer_weights(tmp_path):
    """The optimized model ONNX Runtime saves (all its optimizations, as InferenceSession runs by
    default): 20 convs still read the level integers, with integer weights, no bias, no fused
    activation and no summed input, i.e. no Mul, BatchNorm, Add or Relu folded into them."""
    torch.manual_seed(0)
    proto = to_onnx(ARCHS["res20"](bit=4), QuantConv2d, 32)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in optimized.graph.initializer}
    quantized = [n for n in optimized.graph.node if n.op_type == "Conv" and ".acc" in n.name]
    assert len(quantized) == 20
    for node in quantized:
        w = inits[node.input[1]]
        assert w.dtype == np.float32 and np.array_equal(w, np.round(w)), node.name
        assert [i for i in node.input[2:] if i] == [], node.name
        assert "activation" not in {a.name for a in node.attribute}, node.name


@pytest.mark.parametrize("channels, fits", [(3495, True), (3496, False)])
def test_exact_and_conv_integer_agree_on_an_accumulator_near_2_to_the_24(channels, fits):
    """5 bits: top activation integer 100, top weight integer 48, so a 1x1 conv of 3495 input
    channels with every weight at the top level can reach 3495 * 4800 = 16,776,000 <= 2^24: it
    stays a float Conv; at 3496 channels the bound passes 2^24 and the layer falls back to
    ConvInteger. Either way the outputs equal the integer reference and the ConvInteger graph."""
    conv = QuantConv2d(channels, 2, 1, bit=5)
    with torch.no_grad():
        conv.weight[0].fill_(1.0)  # normalised to +-1, beyond alpha: every weight at the top
        conv.weight[1].fill_(-1.0)
        conv.weight_quant.wgt_alpha.fill_(0.5)
        conv.act_alpha.fill_(1.0)
    t = integer_terms(conv)
    sign = torch.where(t["negative"], -1, 1)
    w_int = t["w_ints"][t["index"]] * sign
    assert w_int.abs().min() == 48 and accumulator_bound(t, w_int.numpy()) == channels * 4800
    g = torch.Generator().manual_seed(0)
    levels = t["a_ints"][torch.randint(0, len(t["a_ints"]), (1, channels, 3, 3), generator=g)]
    levels[..., 0, :] = 100  # one row at the top everywhere: the largest accumulator
    x = levels.float() / 100
    acc, _ = int_conv2d(levels, sign, t["w_ints"][t["index"]], 1, 0)
    assert acc.abs().max() == channels * 4800
    exact = one_conv_model(conv, list(x.shape), "exact")
    assert [n.op_type for n in exact.graph.node if "Conv" in n.op_type] == [
        "Conv" if fits else "ConvInteger"]
    assert (channels * 4800 <= EXACT_FLOAT_SUM) == fits
    out, onnx_acc, _ = session(exact).run(None, {"input": x.numpy()})
    ref_out, ref_acc, _ = session(one_conv_model(conv, list(x.shape), "integer")).run(
        None, {"input": x.numpy()})
    assert np.array_equal(onnx_acc, acc.numpy()) and np.array_equal(ref_acc, acc.numpy())
    assert np.array_equal(out, ref_out)


def test_uint8_weights_with_a_zero_point_give_the_same_outputs():
    torch.manual_seed(0)
    model = ARCHS["res20"](bit=3)
    x = torch.randn(6, 3, 32, 32).numpy()
    signed = session(to_onnx(model, QuantConv2d, 32, convs="integer")).run(None, {"input": x})[0]
    proto = to_onnx(model, QuantConv2d, 32, convs="integer", unsigned_weights=True)
    assert np.array_equal(session(proto).run(None, {"input": x})[0], signed)
    inits = {i.name: i.data_type for i in proto.graph.initializer}
    convint = [n for n in proto.graph.node if n.op_type == "ConvInteger"]
    assert len(convint) == 20 and all(
        [inits[i] for i in n.input[1:]] == [onnx.TensorProto.UINT8] * 3 for n in convint)


def test_plain_power_of_two_at_4_bits_is_refused():
    model = ARCHS["res20"](bit=4, quant="pot")
    with pytest.raises(UserError, match=r"pot levels at 4 bits need integers up to 16384"):
        to_onnx(model, QuantConv2d, 32)


@pytest.mark.slow
def test_calibrated_imagenet_resnet18_agrees_with_pytorch(tiny_imagenet, tmp_path, capsys):
    ckpt = calibrated_imagenet_checkpoint(tmp_path / "r18.pth.tar", 4)
    summary = tmp_path / "r18.json"
    export_main(IMAGENET, ["onnx", str(ckpt), "--image-size", "32", "--summary", str(summary)])
    out = tmp_path / "r18.onnx"
    assert out.is_file() and "4-bit exact float convs on integers" in capsys.readouterr().out
    export_main(IMAGENET, ["ort", str(out), "--data", str(tiny_imagenet), "--compare", str(ckpt),
                           "--image-size", "32", "--float64", "--no-progress", "--summary",
                           str(summary)])
    printed = capsys.readouterr().out
    agree = [agreement(printed, f"{ref} fake-quant model", 6) for ref in ("float", "float64")]
    assert min(agree) >= 5
    found = re.search(r"^float64 fake-quant model: .*, with the float model's on ([56])$",
                      printed, re.M)
    assert found
    from ImageNet.quant_layer import QuantConv2d as ImageNetQuantConv2d
    from ImageNet.resnet import ARCHS
    model = ARCHS["resnet18"](bit=4, num_classes=3)
    written = json.loads(summary.read_text())  # what both commands printed, for programs
    assert written["onnx"] == {
        "file": str(out), "bytes": out.stat().st_size, "checkpoint": str(ckpt),
        "checkpoint_bytes": ckpt.stat().st_size, "convs": "exact", "conv_integer_layers": 0,
        "quantized_convs": sum(isinstance(m, ImageNetQuantConv2d) for m in model.modules())}
    assert written["ort"]["images"] == 6
    assert [written["ort"][ref]["agree"] for ref in ("float", "float64")] == agree
    assert written["ort"]["float64"]["agree_with_float"] == int(found.group(1))
    model.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        ref = model.eval()(x)
    got = ort.InferenceSession(str(out)).run(None, {"input": x.numpy()})[0]
    # all images but at most one (see agreement): same prediction, logits within 1e-3
    close = [np.allclose(g, r, rtol=1e-3, atol=1e-3 * np.abs(r).max()) and g.argmax() == r.argmax()
             for g, r in zip(got, ref.numpy())]
    assert sum(close) >= len(close) - 1


def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"garbage" * 50)
    fp = tmp_path / "fp.pth.tar"
    torch.save({"state_dict": ARCHS["res20"](bit=32).state_dict()}, fp)  # as the authors' FP32
    ours = tmp_path / "ours.pth.tar"
    torch.save({"state_dict": ARCHS["res20"](bit=3).state_dict(), "bit": 3, "arch": "res20"},
               ours)
    out = tmp_path / "m.onnx"
    for argv, error in [
            (["onnx", bad, "--bit", "4", "--out", out], r"^error: cannot read checkpoint"),
            (["onnx", fp, "--bit", "4", "--out", out], r"does not fit this model \(missing"),
            (["onnx", ours, "--bit", "4", "--out", out],
             rf"^error: {ours} is a 3-bit checkpoint, not --bit 4$"),
            (["onnx", ours, "--uint8-weights", "--out", out],
             r"^error: --uint8-weights is a form of the ConvInteger graph: add --convs integer$"),
            (["ort", bad, "--data", tmp_path], rf"^error: ONNX Runtime cannot load {bad}")]:
        proc = run_in_process(cifar_export, *argv, cwd=tmp_path)
        assert proc.returncode == 1
        assert_one_line_error(proc, error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth.tar", "fp.pth.tar",
                                                           "ours.pth.tar"]


@pytest.mark.slow
@pytest.mark.needs_data
@pytest.mark.parametrize("bit", [4, 3, 2])
def test_authors_checkpoints_agree_under_onnx_runtime(bit):
    """The first 200 test images (docs/onnx.md's table is the whole test set)."""
    from apot.export import load_quantized_model
    from CIFAR.data import Normalize, load_cifar
    from helpers import CIFAR_DIR
    model, _ = load_quantized_model(str(OFFICIAL / f"res20_{bit}bit.pth.tar"), CIFAR, "res20",
                                    bit, "apot")
    _, _, x, _ = load_cifar(CIFAR_DIR, "cifar10", download=False, train=False)
    x = Normalize("cifar10", "cpu")(x[:200]).contiguous()
    with torch.no_grad():
        ref = model(x).argmax(1).numpy()
    got = session(to_onnx(model, QuantConv2d, 32)).run(None, {"input": x.numpy()})[0].argmax(1)
    assert (got == ref).sum() >= 199


@pytest.mark.slow
@pytest.mark.needs_data
@pytest.mark.parametrize("bit", [4, 3, 2])
def test_exact_graph_equals_conv_integer_graph_unoptimized_on_authors_checkpoints(bit):
    """With ONNX Runtime's optimizations off each graph runs as written: the logits of the
    exact form and of ConvInteger are equal, bit for bit, on random inputs."""
    from apot.export import load_quantized_model
    model, _ = load_quantized_model(str(OFFICIAL / f"res20_{bit}bit.pth.tar"), CIFAR, "res20",
                                    bit, "apot")
    x = torch.randn(20, 3, 32, 32, generator=torch.Generator().manual_seed(bit)).numpy()
    exact, integer = (session(to_onnx(model, QuantConv2d, 32, convs=c), optimize=False)
                      .run(None, {"input": x})[0] for c in ("exact", "integer"))
    assert np.array_equal(exact, integer)


def test_benchmark_reports_every_model_at_every_batch_asked_for(tmp_path, monkeypatch, capsys):
    from tools import bench_onnx
    monkeypatch.chdir(tmp_path)
    bench_onnx.main(["--seconds", "0.05", "--batches", "1", "3", "--profile", "--summary",
                     str(tmp_path.parent / "bench.json")])
    stdout = capsys.readouterr().out
    rows = [line.split() for line in stdout.splitlines() if line[:5].strip() in ("1", "3")]
    assert [(r[0], " ".join(r[1:-2])) for r in rows] == [
        (b, m) for b in ("1", "3") for m in (
            "APoT ONNX, exact", "APoT ONNX, ConvInteger int8", "APoT ONNX, ConvInteger uint8",
            "FP32 ONNX", "PyTorch fake-quant", "bound: exact, no lookup")]
    assert all(r[-1] == "1.00x" for r in rows if "FP32" in r)
    exact, bound = (set(line.replace(",", " ").split())
                    for line in stdout.strip().splitlines()[-2:])
    assert {"exact", "batch", "3", "Conv", "Gather", "Ceil"} <= exact
    assert {"no", "lookup", "Conv", "Ceil"} <= bound and not {"Gather", "ConvInteger"} & bound
    assert list(tmp_path.iterdir()) == []  # the profiler's file is not left behind
    summary = json.loads((tmp_path.parent / "bench.json").read_text())  # what was printed
    printed = {(r[0], " ".join(r[1:-2])): r[-2] for r in rows}
    assert {(b, m): f"{rate:.1f}" for b, rates in summary["images_per_second"].items()
            for m, rate in rates.items()} == printed
    assert summary["bit"] == 4 and summary["profile_ms"]["APoT ONNX, exact"]["batch"] == 3


def test_the_no_lookup_bound_is_the_exact_graph_less_its_lookup():
    from tools.bench_onnx import without_lookup
    torch.manual_seed(0)
    exact = to_onnx(ARCHS["res20"](bit=2), QuantConv2d, 32)
    bound = without_lookup(exact)
    ops = [n.op_type for n in bound.graph.node]
    assert "Gather" not in ops and ops.count("Conv") == 21 and ops.count("Ceil") == 20
    kept = {n.name for n in bound.graph.node}
    assert kept < {n.name for n in exact.graph.node}
    assert {i.name for i in bound.graph.initializer} <= {i.name for i in exact.graph.initializer}
    x = torch.randn(2, 3, 32, 32).numpy()
    assert session(bound).run(None, {"input": x})[0].shape == (2, 10)

"""hubconf.py: torch.hub entry points of our trained models and the ImageNet builders."""
import importlib.util
import re

import pytest
import torch

from helpers import CIFAR_DIR, ROOT, run_script

BITS = (32, 4, 3, 2)


def hubconf():
    """hubconf.py as a module of its own, as torch.hub imports it."""
    spec = importlib.util.spec_from_file_location("hubconf_under_test", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_list_and_help_read_the_clone(monkeypatch):
    """torch.hub.list and help take GitHub names only; their fetch step is pointed at this
    clone, so everything after it (importing hubconf.py, finding the entries) runs as is."""
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: str(ROOT))
    assert torch.hub.list("owner/repo") == ["apot_resnet18", "apot_resnet20", "apot_resnet34",
                                            "apot_resnet50", "apot_resnet56"]
    for arch, bits in hubconf()._TRAINED.items():
        doc = torch.hub.help("owner/repo", f"apot_resnet{arch[3:]}")
        for bit in bits:  # each stage's accuracy and recipe, read from its files
            best = torch.load(ROOT / "result" / "reference" / f"{arch}_{bit}bit" /
                              "model_best.pth.tar", weights_only=True)
            assert re.search(rf"bit={bit}: test top-1 {best['best_prec']:.2f} \(epoch "
                             rf"{best['epoch'] - 1} of 300\); lr 0\.\d+, weight decay ", doc), doc
    assert "from the 3-bit model" in torch.hub.help("owner/repo", "apot_resnet20")
    assert "(yours: we have trained none)" in torch.hub.help("owner/repo", "apot_resnet18")


def test_resnet56_builds_the_56_layer_network_and_says_when_it_has_no_weights(monkeypatch):
    hub = hubconf()
    monkeypatch.setattr(hub, "_TRAINED", {"res20": BITS, "res56": ()})
    model = torch.hub.load(str(ROOT), "apot_resnet56", source="local", bit=3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # ResNet-(6n+2), n = 9 blocks in each of 3 stages: the stem conv, 2 convs per block and the
    # two 1x1 shortcut convs where the width doubles (the 56th layer is the fc)
    assert len(convs) == 1 + 2 * 27 + 2 and not model.training
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError) as error:
        hub.apot_resnet56(bit=4, pretrained=True)
    assert str(error.value) == "no trained res56 model at bit=4: we have res20 bit=32/4/3/2"
    assert "    bit=32/4/3/2: none yet, its chain is still training " \
        "(result/reference/res56_*bit)" in hub._cifar_doc("res56", "ResNet-56")
    # the authors' two-GPU BatchNorm, as each chain's args.json records it
    assert hub._recipe_line("res56", 32).endswith("from scratch, BatchNorm over 64-image slices")
    assert hub._recipe_line("res20", 32).endswith("from scratch")


def test_hub_lists_exactly_the_finished_stages_of_our_reference_chains():
    """A stage is listed once all its epochs are logged (tools/runs.py's test), and its help
    line names the rest of the chain as still training."""
    from tools.runs import find_runs, finished_runs
    hub = hubconf()
    for arch, trained in hub._TRAINED.items():
        finished = finished_runs(find_runs(ROOT / "result" / "reference", arch), 300)
        assert set(trained) == set(finished), arch
        unfinished = [b for b in BITS if b not in trained]
        doc = hub._cifar_doc(arch, arch)
        assert (f"bit={'/'.join(map(str, unfinished))}: none yet" in doc) == bool(unfinished)


@pytest.mark.parametrize("arch,bit", [(arch, bit) for arch, bits in hubconf()._TRAINED.items()
                                      for bit in bits])
def test_pretrained_models_hold_our_reference_weights(arch, bit):
    model = torch.hub.load(str(ROOT), f"apot_resnet{arch[3:]}", source="local", bit=bit,
                           pretrained=True)
    best = torch.load(ROOT / "result" / "reference" / f"{arch}_{bit}bit" / "model_best.pth.tar",
                      weights_only=True)["state_dict"]
    ours = model.state_dict()
    assert not model.training and ours.keys() == best.keys()
    assert all(torch.equal(ours[k], best[k]) for k in best)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_unknown_models_and_missing_weights_are_one_line_errors(tmp_path, monkeypatch):
    hub = hubconf()
    monkeypatch.setattr(hub, "_REFERENCE", str(tmp_path))
    wrong = tmp_path / "r34.pth.tar"
    torch.save({"state_dict": hub.apot_resnet34(bit=4).state_dict()}, wrong)
    cases = [
        (lambda: torch.hub.load(str(ROOT), "apot_resnet20", source="local", bit=5,
                                pretrained=True),
         ValueError, r"no trained res20 model at bit=5: we have res20 bit=32/4/3/2"
                     r"(, res56 bit=[\d/]+)?"),
        (lambda: torch.hub.load(str(ROOT), "apot_resnet18", source="local", pretrained=True),
         ValueError, r"we have trained no resnet18: pretrained takes the path of your own "
                     r"checkpoint \(ImageNet/main\.py's model_best\.pth\.tar\), or False"),
        (lambda: hub.apot_resnet20(bit=2, pretrained=True),
         FileNotFoundError, rf"the res20 2-bit weights are missing: {re.escape(str(tmp_path))}"
                            r"/res20_2bit/model_best\.pth\.tar \(a partial clone\? .*\)"),
        (lambda: hub.apot_resnet18(bit=4, pretrained=str(wrong)),
         ValueError, rf"{re.escape(str(wrong))} does not fit this model \(\d+ keys missing, \d+ "
                     r"unexpected; first: \S+\): wrong network, bit-width or number of classes\?")]
    for load, kind, message in cases:
        with pytest.raises(kind) as error:
            load()
        assert re.fullmatch(message, str(error.value)), str(error.value)  # one line, whole


def test_imagenet_builders_take_a_users_checkpoint(tmp_path):
    hub = hubconf()
    trained = hub.apot_resnet18(bit=2, num_classes=3)
    path = tmp_path / "mine.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, path)
    model = torch.hub.load(str(ROOT), "apot_resnet18", source="local", bit=2, num_classes=3,
                           pretrained=str(path))
    assert model.training and all(torch.equal(model.state_dict()[k], v)
                                  for k, v in trained.state_dict().items())


@pytest.mark.slow
def test_loading_imports_no_training_code_and_compiles_nothing():
    proc = run_script("-c", f"""
import sys, torch
from torch._dynamo.utils import counters
torch.hub.load({str(ROOT)!r}, "apot_resnet20", source="local", bit=4, pretrained=True)
torch.hub.load({str(ROOT)!r}, "apot_resnet18", source="local", bit=4)
training = [m for m in ("CIFAR.main", "CIFAR.data", "ImageNet.main", "ImageNet.data",
                        "apot.training", "apot.devices", "apot.export") if m in sys.modules]
print(training, sum(counters["frames"].values()))
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[] 0"


@pytest.mark.slow
@pytest.mark.needs_data
def test_hub_model_scores_what_main_py_evaluates_on_2000_images(tmp_path):
    """main.py -e's model and evaluate() on the first 2,000 test images against the hub model
    fed the same normalised images: the same predictions, the same top-1."""
    from apot.devices import RunContext
    from CIFAR.data import Normalize, load_cifar
    from CIFAR.main import build_model, evaluate, get_args_parser, load_initial_weights
    ckpt = ROOT / "result" / "reference" / "res20_2bit" / "model_best.pth.tar"
    args = get_args_parser().parse_args(["-a", "res20", "--bit", "2", "-e", "--init", str(ckpt)])
    reference = build_model(args)
    load_initial_weights(reference, args, print)
    _, _, x, y = load_cifar(CIFAR_DIR, download=False, train=False)
    x, y = x[:2000], y[:2000]
    ctx = RunContext(rank=0, world=1, device=torch.device("cpu"), dp_ids=None, quiet=True)
    normalize = Normalize("cifar10", "cpu")
    _, main_top1 = evaluate(reference, torch.nn.CrossEntropyLoss(), (x, y), normalize, ctx)
    hub = torch.hub.load(str(ROOT), "apot_resnet20", source="local", bit=2, pretrained=True)
    with torch.no_grad():
        predicted = torch.cat([hub(normalize(x[i:i + 100])).argmax(1) for i in range(0, 2000, 100)])
    assert 100 * (predicted == y).sum().item() / 2000 == main_top1


def test_hub_model_exports_to_onnx_with_export_py(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime as ort
    from CIFAR.export import main as cifar_export
    model = torch.hub.load(str(ROOT), "apot_resnet20", source="local", bit=4, pretrained=True)
    ckpt = tmp_path / "hub_4bit.pth.tar"
    torch.save({"state_dict": model.state_dict(), "arch": "res20", "bit": 4}, ckpt)
    cifar_export(["onnx", str(ckpt), "--bit", "4", "--out", str(tmp_path / "m.onnx")])
    assert "4-bit exact float convs on integers" in capsys.readouterr().out
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        want = model(x.contiguous(memory_format=torch.channels_last)).argmax(1).numpy()
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    assert (np.argmax(got, 1) == want).sum() >= 7  # all but one (helpers.agreement says why)

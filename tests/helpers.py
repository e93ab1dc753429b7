"""What the tests share besides fixtures: the data paths, tiny datasets, running a command line
(in this process or a fresh interpreter) and reading its output, small quantized models."""
import contextlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from apot.cli import data_root
from apot.projection import compilation
from CIFAR.quant_layer import QuantConv2d
from ImageNet.quant_layer import QuantConv2d as ImageNetQuantConv2d

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(data_root())  # $APOT_DATA, else ../shared/data
CIFAR_DIR = DATA / "cifar10"
OFFICIAL = DATA / "apot-official-res20"

HAVE_DATA = (CIFAR_DIR / "cifar-10-batches-py").is_dir() and OFFICIAL.is_dir()


def write_tiny_cifar(root, n_train=64, n_test=40, classes=10, seed=0):
    """A CIFAR-10-format folder with a few random images: the layout main.py reads."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per_file = n_train // 5
    for i in range(1, 6):
        entry = {"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, classes, per_file).tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(entry))
    entry = {"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
             "labels": rng.integers(0, classes, n_test).tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    return Path(root)


def make_image_folder(root, classes=3, train=4, val=2, empty_class=False):
    """An ImageFolder root with train/ and val/ of random 40x44 PNGs, one folder per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            if empty_class and c == classes - 1:
                continue
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def run_script(*args, cwd=None, timeout=600, env=None):
    """Run a project script in a fresh interpreter; returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_with_stand_in_python(*cmd, cwd, env=None):
    """Run a shell recipe whose interpreter ($PYTHON) is a stand-in that prints
    "main.py ARGS" and records its argv: (CompletedProcess, one argv list per call)."""
    calls = Path(cwd) / "stand_in_calls"
    calls.mkdir()
    stand_in = Path(cwd) / "stand_in_python"
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$CALLS/$(ls "$CALLS" | wc -l)"\n'
                        'echo "main.py $*"\n')
    stand_in.chmod(0o755)
    full_env = {**os.environ, **(env or {}), "PYTHON": str(stand_in), "CALLS": str(calls)}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          env=full_env)
    recorded = [f.read_text().splitlines()
                for f in sorted(calls.iterdir(), key=lambda f: int(f.name))]
    shutil.rmtree(calls)  # the next run from cwd starts a fresh record
    return proc, recorded


def last_line(text):
    return text.strip().splitlines()[-1]


def assert_one_line_error(proc, pattern):
    """Non-zero exit, no traceback, one error line, and the last stderr line matches pattern."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr
    assert re.search(pattern, last_line(proc.stderr)), proc.stderr


def agreement(stdout, model, n):
    """The number of images on which `model`'s predictions agree with the exported model's,
    from the line `model: top-1 T; predictions agree on A of N (...)`, where N must be n.
    End-to-end tests ask for all but one: two float32 computations in different summation
    orders (which differ between CPUs) may put an activation on the other side of a level
    midpoint, and that may move the prediction of an image whose two best classes are close;
    a defect moves many."""
    found = re.search(rf"^{re.escape(model)}: top-1 [\d.]+; predictions agree on (\d+) of "
                      rf"(\d+) \(", stdout, re.M)
    assert found, stdout
    assert int(found.group(2)) == n, found.group(0)
    return int(found.group(1))


@contextlib.contextmanager
def working_directory(path):
    """contextlib.chdir, which needs Python 3.11."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_in_process(main, *args, cwd, compiled=False):
    """A command line's main(argv) run in this process from cwd, with eager quantizers unless
    compiled: a CompletedProcess as run_script gives, without an interpreter's start-up. Any
    exception but SystemExit propagates, as a traceback would in a subprocess."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with working_directory(cwd), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), compilation(compiled):
        try:
            main([str(a) for a in args])
        except SystemExit as e:  # as the interpreter: a message goes to stderr, status 1
            code = 0 if e.code is None else e.code
            if isinstance(code, str):
                print(code, file=err)
                code = 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def quant_conv(variant, bit, quant, stride):
    """A quantized conv of either variant, with alphas set where the levels are well used."""
    if variant == "CIFAR":
        conv = QuantConv2d(8, 16, 3, stride=stride, padding=1, bit=bit, quant=quant)
        w_alpha = conv.weight_quant.wgt_alpha
    else:
        conv = ImageNetQuantConv2d(8, 16, 3, stride=stride, padding=1, bit=bit,
                                   quant=quant)
        w_alpha = conv.weight_alpha
    with torch.no_grad():
        conv.act_alpha.fill_(2.5)
        w_alpha.fill_(1.7 if bit > 2 else 0.8)
    return conv.eval()


def calibrated_imagenet_checkpoint(path, bit):
    """A resnet18 checkpoint as ImageNet/main.py writes one, with BatchNorm statistics from
    random images (see the CIFAR test above for why)."""
    from ImageNet.resnet import ARCHS
    torch.manual_seed(0)
    model = ARCHS["resnet18"](bit=bit, num_classes=3)
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.momentum = None
    with torch.no_grad():
        model(torch.randn(16, 3, 32, 32))
    torch.save({"state_dict": model.state_dict(), "arch": "resnet18", "bit": bit,
                "quant": "apot"}, path)
    return path

"""Checkpoint files: written atomically, read with weights_only, fitted into a model key by
key; the one checkpoint dict of a training run and the exact resumption from it."""
import json
import math
import os
import secrets
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from apot.errors import UserError


def atomic_write(path, write, text=False):
    """write(file) into a temporary file in the same folder, then rename: a crash never leaves a
    truncated file, and the previous one stays intact until the new one is complete. The
    temporary file is created as open() creates one (0o666 less the umask, which the kernel
    applies), so the result has the permissions a plain write would give it. text: a text file
    with newline="" (csv writes its own line ends)."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{name}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "w", newline="") if text else os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, obj, sort_keys=False):
    """obj as indented JSON with a final newline, written atomically (atomic_write)."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n"),
                 text=True)


def atomic_save(obj, path):
    """torch.save, written atomically (atomic_write)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path):
    """A checkpoint dict with a 'state_dict' (or a bare state dict), read with weights_only."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read checkpoint {path} (corrupt or not a PyTorch checkpoint): "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if isinstance(ckpt, dict) and "state_dict" not in ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        ckpt = {"state_dict": ckpt}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"{path} holds no state_dict")
    return ckpt


def strip_module_prefix(state_dict):
    """Keys without the 'module.' prefix that nn.DataParallel and DDP checkpoints carry."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def _summarise(keys, limit=4):
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(model, state_dict, source, may_miss=lambda key: False):
    """Copy a checkpoint's weights into model; every key must match in name and shape, except
    missing keys for which may_miss(key) is true (they keep the model's values). Returns the
    list of keys that were missing."""
    state_dict = strip_module_prefix(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad_shape = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state_dict.items()
                 if k in own and tuple(v.shape) != tuple(own[k].shape)]
    not_allowed = [k for k in missing if not may_miss(k)]
    problems = []
    if not_allowed:
        problems.append(f"missing {_summarise(not_allowed)}")
    if unexpected:
        problems.append(f"unexpected {_summarise(unexpected)}")
    if bad_shape:
        problems.append(f"mis-shaped {_summarise(bad_shape)}")
    if problems:
        raise UserError(f"checkpoint {source} does not fit this model ({'; '.join(problems)}): "
                        "wrong architecture, bit-width or dataset?")
    model.load_state_dict(state_dict, strict=False)
    constant = constant_quantized_weights(model)
    if constant:
        raise UserError(f"checkpoint {source} holds constant weights (std 0) in "
                        f"{_summarise(constant)}: the weight quantizer divides by their std")
    return missing


def constant_quantized_weights(model):
    """Names of the quantized convs (those with an activation alpha) whose weights are all
    equal: the quantizers normalise weights by their std, which would make them NaN. Checked
    where weights are loaded, not in every forward, which would wait for the device."""
    with torch.no_grad():
        return [name for name, m in model.named_modules()
                if hasattr(m, "act_alpha") and not bool(m.weight.std() > 0)]


@dataclass
class TrainingParts:
    """What a training run steps and its checkpoint holds: the model, its optimizer and lr
    schedule, the loss scaler of a mixed-precision run (or None), and meta, the run's
    metadata (arch, bit...) that the checkpoint records and a --resume must match."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    meta: dict
    scaler: Optional[torch.amp.GradScaler] = None


@dataclass
class Progress:
    """Where a run stands: the next epoch to train, the best test top-1 so far, and one log
    row per finished epoch."""
    epoch: int = 0
    best: float = 0.0
    history: list = field(default_factory=list)


def run_state(parts, progress, args):
    """The one checkpoint dict: what evaluation, --init and exact resumption need (with a
    GradScaler, its loss scale and growth tracker too)."""
    state = {"epoch": progress.epoch, **parts.meta, "state_dict": parts.model.state_dict(),
             "best_prec": progress.best, "optimizer": parts.optimizer.state_dict(),
             "scheduler": parts.scheduler.state_dict(), "history": progress.history,
             "args": vars(args)}
    if parts.scaler is not None:
        state["scaler"] = parts.scaler.state_dict()
    return state


_SCALER_KEYS = {"scale": float, "growth_factor": float, "backoff_factor": float,
                "growth_interval": int, "_growth_tracker": int}


def check_scaler_state(state, path):
    """A checkpoint's GradScaler entry: {} (saved with the scaler off) or its five numbers."""
    if state == {}:
        return
    ok = isinstance(state, dict) and set(state) == set(_SCALER_KEYS) and all(
        isinstance(state[k], (t, int)) and not isinstance(state[k], bool)
        for k, t in _SCALER_KEYS.items())
    if not ok or not (math.isfinite(state["scale"]) and state["scale"] > 0):
        raise UserError(f"--resume {path}: corrupt 'scaler' entry (expected the loss scale "
                        f"state of torch.amp.GradScaler, got {str(state)[:80]})")


def check_run_meta(ckpt, source, **meta):
    """A checkpoint that records its run's metadata (arch, bit...) must match meta; the authors'
    checkpoints record none and are checked by their keys and shapes alone."""
    for key, value in meta.items():
        if ckpt.get(key, value) != value:
            raise UserError(f"{source} is a {key}={ckpt[key]} run, not {key}={value}")


def restore_run(path, parts):
    """Model, optimizer, schedule (and scaler, where the run has one) from a --resume checkpoint,
    whose metadata (arch, bit...) must equal parts.meta; returns its Progress. Everything is
    checked before anything is loaded."""
    ckpt = load_checkpoint(path)
    check_run_meta(ckpt, f"--resume {path}", **parts.meta)
    for key in ("optimizer", "scheduler", "epoch", "history"):
        if key not in ckpt:
            raise UserError(f"--resume {path} has no {key!r}: not a resumable checkpoint "
                            "(use --init to start a new run from its weights)")
    if parts.scaler is not None:
        check_scaler_state(ckpt.get("scaler", {}), path)
    load_weights(parts.model, ckpt["state_dict"], path)
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    parts.scheduler.load_state_dict(ckpt["scheduler"])
    if parts.scaler is not None and parts.scaler.is_enabled() and ckpt.get("scaler"):
        parts.scaler.load_state_dict(ckpt["scaler"])
    return Progress(ckpt["epoch"], ckpt["best_prec"], list(ckpt["history"]))

"""Nearest-level projection onto a sorted level set, as a chain of selects on the midpoints.

Rule: x goes to levels[k] where k is the number of midpoints strictly below x, so an input
exactly on a midpoint goes to the LOWER level, and anything below the first midpoint
(negative inputs included) to levels[0]. The authors' argmin over a |levels| x N distance
matrix sends ties to whichever level comes first in their unsorted set; the two differ only
for inputs within float32 rounding of a midpoint.

The chain is L - 1 elementwise selects with no |levels| x N tensor; under torch.compile (see
`maybe_compile`) it fuses with the quantizer's other elementwise work into one pass over the
tensor, an order of magnitude faster on the CPU than torch.bucketize's binary search.
"""
import contextlib
import functools
import os

import torch


def midpoints(levels):
    """Decision boundaries between consecutive levels of a sorted 1-D level set."""
    return (levels[1:] + levels[:-1]) / 2


def project(x, levels, mids):
    """Nearest level of the sorted `levels` for every element of x (ties to the lower level)."""
    q = torch.zeros_like(x) + levels[0]
    for j in range(mids.numel()):
        q = torch.where(x > mids[j], levels[j + 1], q)
    return q


def project_index(x, mids):
    """Index of the nearest level (same rule as `project`): the number of midpoints below x."""
    idx = torch.zeros_like(x, dtype=torch.int64)
    for j in range(mids.numel()):
        idx += x > mids[j]
    return idx


_override = None  # set inside `compilation(...)`; None: APOT_COMPILE decides


def compile_enabled():
    """Whether the quantizers run compiled: as the innermost `compilation(...)` block says,
    else unless the environment sets APOT_COMPILE=0."""
    if _override is not None:
        return _override
    return os.environ.get("APOT_COMPILE", "1") != "0"


@contextlib.contextmanager
def compilation(enabled):
    """Quantizers compiled (True) or eager (False) inside the block, as before it afterwards;
    None changes nothing. main.py's --no-compile and the export commands run inside one, so
    nothing they do changes how later code in the same process compiles."""
    global _override
    saved = _override
    if enabled is not None:
        _override = enabled
    try:
        yield
    finally:
        _override = saved


def maybe_compile(fn):
    """fn compiled on its first call (dynamic shapes: one compile for every batch and layer
    shape), or fn itself when compilation is disabled at that time, or when the caller is being
    compiled already (main.py's --compile-model), which then traces fn into its own graph."""
    compiled = None

    @functools.wraps(fn)
    def wrapper(*args):
        nonlocal compiled
        if torch.compiler.is_compiling() or not compile_enabled():
            return fn(*args)
        if compiled is None:
            compiled = torch.compile(fn, dynamic=True)
        return compiled(*args)

    return wrapper

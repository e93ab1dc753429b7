"""Nearest-level projection by bucketize on the midpoints of a sorted level set.

O(N log L) time and no |levels| x N distance matrix (the authors' method). Tie rule: an input
exactly on a midpoint goes to the LOWER level (bucketize with right=False puts x == boundary
in the lower bucket). The authors' argmin sends ties to whichever level comes first in their
unsorted set; the two differ only for inputs within float32 rounding of a midpoint.
"""
import torch


def midpoints(levels):
    """Decision boundaries between consecutive levels of a sorted 1-D level set."""
    return (levels[1:] + levels[:-1]) / 2


def project_index(x, mids):
    """Index of the nearest level for every element of x (ties to the lower level)."""
    return torch.bucketize(x, mids)


def project(x, levels, mids):
    """Nearest level of the sorted `levels` for every element of x."""
    return levels[project_index(x, mids)]

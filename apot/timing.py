"""Timing for the benchmarks: the seconds of a call with the device synchronised, and medians of
calls taken in turn, so that a noisy machine's drift hits every model alike."""
import statistics
import time

import torch


def sync(device):
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, reps=1, device=None):
    """Mean seconds of reps calls of fn(), the device's queued work included."""
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps


def interleaved_medians(calls, rounds, device=None, warmup=2):
    """{key: median seconds of calls[key]()}: `warmup` untimed rounds (compilation included),
    then `rounds` timed ones, each calling every entry once in turn."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            times[key].append(seconds(fn, device=device))
    return {key: statistics.median(t) for key, t in times.items()}

"""Wall-clock timing: the median of repeated calls, alone or in alternation with other calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def time_it(
    fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None] | None = None
) -> float:
    """Median wall-clock seconds of `repeats` calls of `fn`, after `warmup` untimed calls.

    `sync` (e.g. `torch.cuda.synchronize`) runs before and after each timed call, so queued
    device work is neither charged to the wrong call nor left out.
    """
    for _ in range(warmup):
        fn()
    return statistics.median(time_once(fn, sync) for _ in range(repeats))


def time_once(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> float:
    """Wall-clock seconds of one call of `fn` (synchronised before and after when `sync` is given)."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def time_interleaved(
    fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int, sync: Callable[[], None] | None = None
) -> dict[str, float]:
    """Median seconds of each of `fns`, timed in alternation (one call of each per round, the order
    reversed every other round) so that drifting machine load hits them alike; `warmup` untimed calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            times[name].append(time_once(fns[name], sync))
    return {name: statistics.median(values) for name, values in times.items()}

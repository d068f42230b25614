"""Requests at the same moment, from threads of their own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def at_once(n: int, work: Callable[[int], T]) -> list[T]:
    """`work(0)` … `work(n - 1)` in n threads of their own, released together (a barrier): n requests at the same
    moment, as many workers of a county deployment would send them. Returns the results in order."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=60)
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))

"""Requests at the same moment, from threads of their own, and counting what they did."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

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


def count_checks(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[int]:
    """Count the password (or PIN) checks `module` makes through its `verify_password`, each one an Argon2
    verification an attacker got: the list returned grows by one per check, from whichever thread."""
    checked: list[int] = []
    lock = threading.Lock()
    real = module.verify_password

    def verify(password: str, stored: str | None) -> bool:
        with lock:
            checked.append(1)
        return bool(real(password, stored))

    monkeypatch.setattr(module, "verify_password", verify)
    return checked

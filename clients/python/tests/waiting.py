"""Polling with a deadline, for the tests: nothing sleeps a fixed time to make an assertion true."""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


def wait_for(
    pred: Callable[[], Optional[T]],
    timeout: float,
    what: str,
    interval: float = 0.01,
    log: Callable[[], str] = lambda: "",
) -> T:
    """pred()'s first truthy value, polled every `interval` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = log()
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f"\n{detail}" if detail else ""))
        time.sleep(interval)

"""Run async code from a sync test, whatever else the test session has running."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


def run_async(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`anyio.run(function, *args)` on a fresh event loop in its own thread.

    Once the browser tests have run, pytest-playwright's sync API keeps an event loop running in
    the main thread for the rest of the session, and `asyncio.run` refuses to start a second one
    there; a worker thread has no running loop.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, function, *args).result()

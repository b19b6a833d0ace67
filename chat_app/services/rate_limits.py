"""Named rate limits over the `limits` library: memory by default, Redis when configured."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio.to_thread
from limits import RateLimitItem, parse_many, storage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from chat_app.errors import RateLimited, RateLimitStoreUnavailable

KEY_PREFIX = "chat_app"
#: How often the in-process storage drops counters whose window has passed.
EXPIRED_SWEEP_EVERY_S = 60.0


class _MemoryStorage(storage.MemoryStorage):
    """limits' MemoryStorage without a thread start in front of a hit.

    Its `incr` starts a 10 ms `threading.Timer` that drops expired counters whenever the last
    one has run out: after any 10 ms pause, about 0.25 ms of thread start-up lands on the
    request (bench.events (b): one chat message is one hit). `get`, which `incr` calls first,
    already ignores and drops an expired counter, so the timer only frees memory; here an `incr`
    does that itself once a minute instead. Only `incr` is replaced: the fixed-window strategy
    uses nothing else that schedules the timer.
    """

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = time.time() + EXPIRED_SWEEP_EVERY_S

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + EXPIRED_SWEEP_EVERY_S
            for stale, expires_at in list(self.expirations.items()):
                if expires_at <= now:
                    self.get(stale)
        self.get(key)
        with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = now + expiry
        return self.storage.get(key, 0)


@dataclass(frozen=True)
class Quota:
    """The tightest limit of a name after a hit: for RateLimit headers."""

    name: str
    limit: int
    remaining: int
    window_s: int
    reset_in_s: int


class RateLimiter:
    """Counts hits per (limit name, key) and raises RateLimited past a limit."""

    def __init__(self, limits: dict[str, str], storage_uri: str | None = None) -> None:
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in limits.items()
        }
        options: dict[str, float] = {}
        if storage_uri and storage_uri.startswith(("redis", "unix")):
            # A dead Redis must fail a request quickly (503), not hang it.
            options = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}
        self._storage: storage.Storage = (
            storage.storage_from_string(storage_uri, **options)
            if storage_uri and not storage_uri.startswith("memory")
            else _MemoryStorage()
        )
        self._strategy = FixedWindowRateLimiter(self._storage)
        # In-process counters do no I/O: async callers count them inline, not on a thread.
        self._in_process = isinstance(self._storage, storage.MemoryStorage)

    def hit(self, name: str, key: str) -> Quota:
        """Count one request of `name` by `key`; raise RateLimited when over any limit."""
        with _store_errors():
            for item in self._items[name]:
                if not self._strategy.hit(item, KEY_PREFIX, name, key):
                    raise self._exceeded(name, item, key)
            return self.quota(name, key)

    def check(self, name: str, key: str) -> None:
        """Raise RateLimited if `key` is already over `name`, without counting a hit."""
        with _store_errors():
            for item in self._items[name]:
                if not self._strategy.test(item, KEY_PREFIX, name, key):
                    raise self._exceeded(name, item, key)

    async def hit_async(self, name: str, key: str) -> Quota:
        """`hit` for the event loop: inline for in-process counters, on a thread for Redis."""
        # One code path for both: limits' asyncio storages would keep separate in-memory
        # counters from the sync ones the CLI and sync callers use.
        if self._in_process:
            return self.hit(name, key)
        return await anyio.to_thread.run_sync(self.hit, name, key)

    async def check_async(self, name: str, key: str) -> None:
        """`check` for the event loop (see `hit_async`)."""
        if self._in_process:
            self.check(name, key)
        else:
            await anyio.to_thread.run_sync(self.check, name, key)

    def quota(self, name: str, key: str) -> Quota:
        """What is left of the tightest limit of `name` for `key`."""
        best: Quota | None = None
        for item in self._items[name]:
            reset_at, remaining = self._strategy.get_window_stats(item, KEY_PREFIX, name, key)
            current = Quota(
                name=name,
                limit=item.amount,
                remaining=max(0, remaining),
                window_s=item.get_expiry(),
                reset_in_s=max(0, math.ceil(reset_at - time.time())),
            )
            if best is None or current.remaining < best.remaining:
                best = current
        assert best is not None, f"rate limit {name!r} has no items"
        return best

    def _exceeded(self, name: str, item: RateLimitItem, key: str) -> RateLimited:
        reset_at, _ = self._strategy.get_window_stats(item, KEY_PREFIX, name, key)
        return RateLimited(
            name=name,
            retry_after_s=max(1, math.ceil(reset_at - time.time())),
            limit=item.amount,
            window_s=item.get_expiry(),
        )

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self._storage.reset()


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except (RedisError, ConnectionError, TimeoutError) as exc:
        raise RateLimitStoreUnavailable() from exc

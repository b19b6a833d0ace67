"""The gunicorn worker class production serves with (README "Production", `bench/memory.py`).

`reflex run --env prod` runs `gunicorn --preload --worker-class uvicorn.workers.UvicornH11Worker`
when gunicorn and uvicorn are both installed, and granian otherwise. `default_server_env`, called
by rxconfig.py, puts `--worker-class` naming this class into GUNICORN_CMD_ARGS, which Reflex adds
after its own arguments, so it wins. The class is Reflex's worker (asyncio loop, h11) with two
websocket settings, each measured per idle tab with `bench/memory.py`:

- `ws_per_message_deflate=False`: Chromium offers permessage-deflate on every websocket and uvicorn
  accepts it by default, then keeps a zlib compressor and decompressor per connection, ~120 kB per
  tab. Reflex's messages are small JSON deltas; granian does not compress them either.
- `ws="wsproto"`: uvicorn's default, `websockets-sansio` (taken whenever the `websockets` package
  happens to be installed), keeps ~5 kB more per connection.

granian itself is no option for many tabs: its websocket (tokio-tungstenite) allocates a 128 KiB
read buffer per connection, and neither granian nor Reflex exposes a setting for it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from uvicorn.workers import UvicornH11Worker


class Worker(UvicornH11Worker):
    """`uvicorn.workers.UvicornH11Worker` with wsproto and without permessage-deflate."""

    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornH11Worker.CONFIG_KWARGS,
        "ws": "wsproto",
        "ws_per_message_deflate": False,
    }


WORKER_CLASS = "chat_app.uvicorn_worker.Worker"
MAX_WORKERS = 8  # Reflex's own cap (reflex.utils.processes.MAX_BACKEND_WORKERS)


def default_server_env(environ: MutableMapping[str, str], *, redis: bool, cpus: int) -> None:
    """Make `reflex run --env prod` serve with gunicorn and `WORKER_CLASS`; an explicit setting in
    `environ` wins (REFLEX_USE_GRANIAN=true for granian, a `--worker-class` in GUNICORN_CMD_ARGS,
    WEB_CONCURRENCY).

    Reflex picks gunicorn by itself when gunicorn and uvicorn are installed, but with a warning
    that this will change; REFLEX_USE_GRANIAN=false says it is meant. Reflex gives gunicorn its
    worker count as `--threads`, which a uvicorn worker ignores, so with Redis (the only state
    manager several processes can share) the count Reflex means, 2 x cores + 1 up to 8, goes to
    WEB_CONCURRENCY, gunicorn's default for `--workers`; without Redis it stays 1.
    """
    environ.setdefault("REFLEX_USE_GRANIAN", "false")
    args = environ.get("GUNICORN_CMD_ARGS", "")
    if WORKER_CLASS not in args:  # first, so that a --worker-class of the caller's comes later
        environ["GUNICORN_CMD_ARGS"] = f"--worker-class {WORKER_CLASS} {args}".strip()
    if redis:
        environ.setdefault("WEB_CONCURRENCY", str(min(2 * cpus + 1, MAX_WORKERS)))

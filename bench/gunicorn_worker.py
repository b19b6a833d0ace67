"""A uvicorn worker for gunicorn without permessage-deflate (`bench.memory`, gunicorn-nodeflate).

Chromium offers permessage-deflate on every websocket; uvicorn accepts it by default and then
keeps a zlib compressor and decompressor per connection. Select this worker with
`GUNICORN_CMD_ARGS="--worker-class bench.gunicorn_worker:NoDeflateWorker"`.
"""

from uvicorn.workers import UvicornH11Worker


class NoDeflateWorker(UvicornH11Worker):
    """Reflex's worker class (asyncio loop, h11) with `ws_per_message_deflate=False`."""

    CONFIG_KWARGS = {**UvicornH11Worker.CONFIG_KWARGS, "ws_per_message_deflate": False}


class NoDeflateSansioWorker(NoDeflateWorker):
    """The same on uvicorn's `websockets-sansio` protocol (needs the `websockets` package)."""

    CONFIG_KWARGS = {**NoDeflateWorker.CONFIG_KWARGS, "ws": "websockets-sansio"}

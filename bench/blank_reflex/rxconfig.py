"""Reflex configuration of the blank baseline app of `bench.events` (bench/README.md).

Only what the chat app's `rxconfig.py` sets that reaches the event websocket is repeated here:
no database, no Redis (so the disk state manager and one worker, as the chat app gets under the
benchmark), the same production server (gunicorn with `chat_app.uvicorn_worker.Worker`),
telemetry off. Frontend-only settings (plugins, compression) do not
matter: the benchmark serves this app with `--backend-only`.
"""

import os

import reflex as rx

from chat_app.uvicorn_worker import default_server_env

# The server the chat app's rxconfig.py selects, so both apps run on the same one.
default_server_env(os.environ, redis=False, cpus=os.cpu_count() or 1)

config = rx.Config(
    app_name="blank_reflex",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # The chat app runs without REDIS_URL under the benchmark: the disk state manager.
    state_manager_mode=rx.constants.StateManagerMode.DISK,
    # No sitemap or theme plugin: nothing is compiled for a browser.
    plugins=[],
    disable_plugins=[rx.plugins.SitemapPlugin],
)

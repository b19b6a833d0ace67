"""Reflex configuration of `bench.page`'s floor: a blank Reflex page (bench/README.md).

Served as the chat app is under `bench.page` (`reflex run --env prod --single-port`, the same
production server, one worker, the disk state manager) with the frontend settings of ours that
reach the page: precompressed assets, no sitemap.
"""

import os

import reflex as rx

from chat_app.uvicorn_worker import default_server_env

default_server_env(os.environ, redis=False, cpus=os.cpu_count() or 1)

config = rx.Config(
    app_name="blank_page",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    state_manager_mode=rx.constants.StateManagerMode.DISK,
    frontend_compression_formats=["brotli", "gzip"],
    disable_plugins=[rx.plugins.SitemapPlugin],
)

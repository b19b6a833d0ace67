"""Reflex configuration, taken from chat_app.settings (one place reads the environment)."""

import os

import reflex as rx

from chat_app.build_plugins import CompileHintsPlugin, LeanRadixThemesPlugin
from chat_app.settings import get_settings_or_exit
from chat_app.uvicorn_worker import default_server_env

settings = get_settings_or_exit()
# The default SQLite file lives in the data dir; `reflex db migrate` opens it before the app runs.
settings.data_dir.mkdir(parents=True, exist_ok=True)
# The production server: gunicorn with chat_app.uvicorn_worker (README "Production"). Set here,
# not in the Makefile, so that every `reflex run --env prod` serves the same way.
default_server_env(os.environ, redis=settings.redis_url is not None, cpus=os.cpu_count() or 1)

config = rx.Config(
    app_name="chat_app",
    db_url=settings.database_url,
    redis_url=settings.redis_url,
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # Brotli first: browsers that accept it get ~18 % fewer bytes than gzip (bench/page.py).
    frontend_compression_formats=["brotli", "gzip"],
    trusted_proxy_hops=settings.trusted_proxy_hops,
    plugins=[
        rx.plugins.SitemapPlugin(),
        LeanRadixThemesPlugin(theme=rx.theme(accent_color="violet", radius="large")),
        CompileHintsPlugin(),
    ],
)

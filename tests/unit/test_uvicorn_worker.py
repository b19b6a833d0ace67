"""The production server: the gunicorn worker class and how rxconfig.py selects it."""

from __future__ import annotations

import pytest
from gunicorn.util import load_class

from chat_app.uvicorn_worker import WORKER_CLASS, Worker, default_server_env


def test_defaults_select_gunicorn_with_our_worker_and_one_process() -> None:
    environ: dict[str, str] = {}
    default_server_env(environ, redis=False, cpus=2)
    assert environ == {"REFLEX_USE_GRANIAN": "false",
                       "GUNICORN_CMD_ARGS": "--worker-class chat_app.uvicorn_worker.Worker"}


def test_gunicorn_loads_the_worker_class_by_that_name() -> None:
    assert load_class(WORKER_CLASS) is Worker
    assert Worker.CONFIG_KWARGS["ws"] == "wsproto"
    assert Worker.CONFIG_KWARGS["ws_per_message_deflate"] is False


@pytest.mark.parametrize(("cpus", "workers"), [(1, "3"), (2, "5"), (64, "8")])
def test_with_redis_the_worker_count_reflex_means(cpus: int, workers: str) -> None:
    environ: dict[str, str] = {}
    default_server_env(environ, redis=True, cpus=cpus)
    assert environ["WEB_CONCURRENCY"] == workers


def test_explicit_settings_win_and_repeated_loads_change_nothing() -> None:
    environ = {"REFLEX_USE_GRANIAN": "true", "GUNICORN_CMD_ARGS": "--worker-class x.Y --timeout 5",
               "WEB_CONCURRENCY": "2"}
    default_server_env(environ, redis=True, cpus=2)
    default_server_env(environ, redis=True, cpus=2)  # rxconfig.py is loaded by several processes
    assert environ == {
        "REFLEX_USE_GRANIAN": "true",
        # gunicorn takes the last --worker-class: the caller's
        "GUNICORN_CMD_ARGS": "--worker-class chat_app.uvicorn_worker.Worker "
                             "--worker-class x.Y --timeout 5",
        "WEB_CONCURRENCY": "2",
    }

"""Browser fixtures: Debian's chromium through Playwright, and the app served for real."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.server import ServedApp, start_app

SYSTEM_CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Use the system chromium when present (Playwright cannot download a browser here)."""
    args = {
        **browser_type_launch_args,
        "args": ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
    }
    if shutil.which("chromium"):
        args["executable_path"] = SYSTEM_CHROMIUM
    return args


@pytest.fixture(scope="module")
def served_app(tmp_path_factory) -> Iterator[ServedApp]:
    """The app with its embedded defaults (dev controls off)."""
    app = start_app(tmp_path_factory.mktemp("app"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def served_dev_app(tmp_path_factory) -> Iterator[ServedApp]:
    """The app with CHAT_APP_DEV_CONTROLS=1."""
    app = start_app(tmp_path_factory.mktemp("devapp"), CHAT_APP_DEV_CONTROLS="1")
    yield app
    app.stop()

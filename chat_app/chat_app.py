"""The Reflex app: one page, the REST API mounted in front, the background sweep."""

from __future__ import annotations

import asyncio
import functools
import logging

import reflex as rx

from chat_app.api import create_api
from chat_app.api.middleware import SecurityHeadersMiddleware
from chat_app.components.conversation import conversation
from chat_app.components.dev_panel import dev_panel
from chat_app.components.files_panel import files_panel
from chat_app.components.header import header
from chat_app.components.reset_dialog import reset_dialog
from chat_app.container import get_services
from chat_app.log_format import configure_logging
from chat_app.services.audit import RequestContext, keyed_ref
from chat_app.serving import ChatApp
from chat_app.settings import get_settings_or_exit
from chat_app.state.dev import DevState
from chat_app.state.session import SessionState

log = logging.getLogger("chat_app.sweep")
settings = get_settings_or_exit()
configure_logging(functools.partial(keyed_ref, settings.secret_key))
MAX_UPLOAD_BYTES = int(settings.max_upload_mb * 2**20)


def index() -> rx.Component:
    """The single page of SPEC section 9."""
    return rx.vstack(
        header(),
        rx.flex(
            rx.flex(
                conversation(MAX_UPLOAD_BYTES, settings.max_files_per_session),
                # Compiled in only when enabled: without the flag it is not even in the bundle.
                dev_panel() if settings.dev_controls else rx.fragment(),
                direction="column",
                as_="main",
                flex="1",
                min_width="0",
                spacing="4",
            ),
            rx.box(
                files_panel(),
                as_="aside",
                width=["100%", "100%", "100%", "20rem"],
                flex_shrink="0",
            ),
            direction=rx.breakpoints(initial="column", lg="row"),
            width="100%",
            max_width="76rem",
            margin_x="auto",
            padding="4",
            spacing="4",
            box_sizing="border-box",
        ),
        reset_dialog(),
        spacing="0",
        min_height="100vh",
        width="100%",
    )


on_load = [SessionState.load_session]
if settings.dev_controls:
    on_load.append(DevState.refresh_audit)

FAVICON = (
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'>"
    "<rect width='32' height='32' rx='8' fill='%236e56cf'/>"
    "<path d='M8 10h16v10H14l-6 5z' fill='white'/></svg>"
)

# The page is prerendered: its composer shows (enabled) before React has hydrated it, and a click
# on Send in that window would submit the form natively, a GET that reloads the page and loses the
# text. Every form here is React's, whose handler prevents that default anyway, so the default is
# prevented from the start (the text stays in the box until the page is live).
PREVENT_NATIVE_SUBMIT = "document.addEventListener('submit', (e) => e.preventDefault(), true);"

# ChatApp: an rx.App that serves its event websocket with less memory per tab (chat_app/serving.py).
app = ChatApp(
    # The API in front of Reflex's routes, then the security headers around everything.
    api_transformer=[create_api(get_services), SecurityHeadersMiddleware],
    head_components=[rx.el.link(rel="icon", href=FAVICON), rx.el.script(PREVENT_NATIVE_SUBMIT)],
)
app.add_page(index, route="/", title="chat_app", on_load=on_load)


@app.register_lifespan_task
async def sweep_periodically() -> None:
    """Run the sweep every CHAT_APP_SWEEP_INTERVAL_MINUTES (0 disables it)."""
    interval_s = settings.sweep_interval_minutes * 60
    if interval_s <= 0:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            report = await asyncio.to_thread(
                get_services().sweeper.run, RequestContext(actor="sweep")
            )
            log.info("sweep: %s", report.as_dict())
        except Exception as exc:  # the loop must survive a bad round; the next one retries
            log.warning("sweep failed (%s); retrying next round", type(exc).__name__)

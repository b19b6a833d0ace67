"""The least a Reflex page can be and still pass `bench.page`'s "usable" probe.

A textarea labelled "Message" with a key handler (the probe checks that React attached one) and
a badge that shows 8 characters once the page-load event has run: the websocket connected, the
hydrate ran, and an on_load handler (here: pick an id, no database) sent its delta. What the
chat app adds on top of this is its own cost; this is Reflex's.
"""

import uuid

import reflex as rx


class PageState(rx.State):
    """The page's id, stored in the browser like the chat app's session id."""

    sid: str = rx.LocalStorage("", name="sid", sync=True)
    shown: str = ""

    @rx.event
    def load(self) -> None:
        """on_load: keep the stored id or pick one (the chat app validates or issues one)."""
        self.sid = self.sid or str(uuid.uuid4())
        self.shown = self.sid[:8]

    @rx.event
    def key_down(self, key: str) -> None:
        """The composer's key handler: nothing to do, it only has to be attached."""


def index() -> rx.Component:
    return rx.el.main(
        rx.el.span(PageState.shown, custom_attrs={"data-testid": "session-short-id"}),
        rx.el.textarea(aria_label="Message", on_key_down=PageState.key_down),
    )


app = rx.App()
app.add_page(index, route="/", on_load=PageState.load)

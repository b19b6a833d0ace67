"""The blank Reflex app `bench.events` measures as the framework's own floor.

It has the shape of the chat app's two measured flows with none of its work (no database,
no I/O): a page whose on_load handler copies the browser's stored `sid` into a var (the chat
app's `SessionState.load_session` looks the session up instead), and a background handler
that sends its first delta at once (the chat app's `ChatState.send` saves the message,
retrieves passages and then streams). The states nest as the chat app's do (a session state
under the root, a chat state under it), so a background handler's `async with self` loads the
same depth of tree.
"""

import reflex as rx


class SessionState(rx.State):
    """The page's session: the stored id, and what on_load made of it."""

    sid: str = rx.LocalStorage("", name="sid", sync=True)
    loaded: str = ""

    @rx.event
    def load(self) -> None:
        """on_load: a handler that only reads the stored id (`load_session` looks it up)."""
        self.loaded = self.sid


class ChatState(SessionState):
    """The composer's state: one background handler and the var it streams into."""

    reply_text: str = ""

    @rx.event(background=True)
    async def send(self, text: str) -> None:
        """The first token without the work: one state write, so one delta, at once."""
        async with self:
            self.reply_text = text


def index() -> rx.Component:
    """The page only has to exist, with its on_load: served `--backend-only`, it is never built."""
    return rx.box(rx.text(SessionState.loaded), rx.text(ChatState.reply_text))


app = rx.App()
app.add_page(index, route="/", on_load=SessionState.load)

"""A local stand-in for the OpenAI Chat Completions API, for tests and browser tests.

Point the `openai` SDK at `FakeOpenAI.base_url`. Behaviour comes from `mode` (server-wide) or,
per request, from a marker such as ``[fake:slow]`` in the content of the LAST message:

    ok    200; streams `reply_text` token by token (or one chat.completion if not streaming)
    slow  like ok, but a ~40-token reply with at least 0.25 s between chunks
    401   invalid API key error        429  rate limit error (Retry-After: 1)
    500   server error                 hang  reads the request, never answers
    cut   200 SSE headers and 3 token chunks, then the socket is closed mid-body

Also serves GET /v1/models. Standard library only; run standalone with
``python -m tests.fake_openai --port N`` (prints ``ready <port>``, serves until killed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MODES = ("ok", "slow", "401", "429", "500", "hang", "cut")
MARKER_RE = re.compile(r"\[fake:(" + "|".join(MODES) + r")\]")

DEFAULT_REPLY = "Hello from the fake model. It streams token by token."
SLOW_REPLY = (
    "This is a deliberately slow reply from the fake model. It arrives one word at a time, "
    "with a pause after every word, so that a person or a browser test has several seconds "
    "to press the Stop button first."
)
SLOW_MIN_DELAY_S = 0.25
CUT_AFTER_TOKENS = 3
HANG_MAX_S = 60.0
MODEL_ID = "fake-model"

_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "401": (
        401,
        {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
    "429": (
        429,
        {
            "message": "Rate limit reached",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "500": (
        500,
        {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
}


def tokenize(text: str) -> list[str]:
    """Split `text` into word-ish tokens that keep their whitespace; they join back to `text`."""
    tokens = re.findall(r"\s*\S+\s*", text)
    if "".join(tokens) != text:  # whitespace-only text
        tokens = [text] if text else []
    return tokens


def _content_text(content: Any) -> str:
    """The text of a message `content`: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def marker_mode(body: Any) -> str | None:
    """The mode named by a ``[fake:...]`` marker in the last message of `body`, if any."""
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    found = MARKER_RE.findall(_content_text(messages[-1].get("content")))
    return found[-1] if found else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for hung or streaming handlers
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # client went away; nothing to report
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    # --- plumbing ---------------------------------------------------------------------------

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, kind: str) -> None:
        status, error = _ERRORS[kind]
        headers = {"Retry-After": "1"} if kind == "429" else None
        self._send_json(status, {"error": error}, headers)

    def _authorized(self) -> bool:
        key = self.server.fake.require_key
        return key is None or self.headers.get("Authorization", "") == f"Bearer {key}"

    def _abort(self) -> None:
        """Close the connection without finishing the response (FIN, not a clean end)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # --- routes -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self._path() not in ("/v1/models", "/models"):
            self._send_json(
                404,
                {
                    "error": {
                        "message": "Not found",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        if not self._authorized():
            self._send_error("401")
            return
        self._send_json(
            200,
            {
                "object": "list",
                "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake"}],
            },
        )

    def do_POST(self) -> None:
        raw = self._read_body()
        if self._path() not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(
                404,
                {
                    "error": {
                        "message": "Not found",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(
                400,
                {
                    "error": {
                        "message": "Request body is not a JSON object",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        fake = self.server.fake
        number = fake._record(body)
        if not self._authorized():
            self._send_error("401")
            return
        mode = marker_mode(body) or fake.mode
        if mode in _ERRORS:
            self._send_error(mode)
            return
        if mode == "hang":
            fake._stopping.wait(HANG_MAX_S)
            self._abort()
            return
        text, delay = fake.reply_text, fake.token_delay_s
        if mode == "slow":
            text, delay = fake.slow_reply_text, max(delay, SLOW_MIN_DELAY_S)
        completion_id = f"chatcmpl-fake{number}"
        model = str(body.get("model") or MODEL_ID)
        try:
            if body.get("stream"):
                self._stream(body, completion_id, model, text, delay, cut=mode == "cut")
            else:
                self._complete(body, completion_id, model, text, delay, cut=mode == "cut")
        except OSError:  # the client hung up (e.g. pressed Stop)
            self.close_connection = True

    # --- responses --------------------------------------------------------------------------

    @staticmethod
    def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
        prompt = sum(
            len(tokenize(_content_text(m.get("content"))))
            for m in body.get("messages") or []
            if isinstance(m, dict)
        )
        completion = len(tokenize(text))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _complete(
        self, body: dict[str, Any], cid: str, model: str, text: str, delay: float, cut: bool
    ) -> None:
        if delay and self.server.fake._stopping.wait(delay * len(tokenize(text))):
            self._abort()
            return
        payload = {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(body, text),
        }
        if not cut:
            self._send_json(200, payload)
            return
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self._abort()

    def _write_chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk, written straight to the socket (wfile is unbuffered)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(
        self, body: dict[str, Any], cid: str, model: str, text: str, delay: float, cut: bool
    ) -> None:
        fake = self.server.fake
        created = int(time.time())
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        def event(delta: dict[str, Any], finish: str | None) -> bytes:
            chunk: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if include_usage:
                chunk["usage"] = None
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

        tokens = tokenize(text) or [""]
        if cut:
            tokens = tokens[:CUT_AFTER_TOKENS]
        for i, token in enumerate(tokens):
            if i and delay and fake._stopping.wait(delay):
                self._abort()
                return
            delta = {"role": "assistant", "content": token} if i == 0 else {"content": token}
            self._write_chunk(event(delta, None))
        if cut:
            self._abort()
            return
        if delay and fake._stopping.wait(delay):
            self._abort()
            return
        self._write_chunk(event({}, "stop"))
        if include_usage:
            usage_chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": self._usage(body, text),
            }
            self._write_chunk(b"data: " + json.dumps(usage_chunk).encode() + b"\n\n")
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeOpenAI:
    """A fake OpenAI Chat Completions server on a background thread.

    `mode`, `reply_text`, `slow_reply_text` and `token_delay_s` may be changed at any time;
    each request reads them when it arrives. `requests` holds every JSON body POSTed to
    /v1/chat/completions, in order of arrival.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: str = "ok",
        reply_text: str = DEFAULT_REPLY,
        token_delay_s: float = 0.0,
        require_key: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.mode = mode
        self.reply_text = reply_text
        self.slow_reply_text = SLOW_REPLY
        self.token_delay_s = token_delay_s
        self.require_key = require_key
        self.verbose = verbose
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; expected one of {MODES}")
        self._mode = value

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's `base_url`, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def _record(self, body: dict[str, Any]) -> int:
        with self._lock:
            self.requests.append(body)
            return len(self.requests)

    def reset(self) -> None:
        """Forget recorded requests and go back to the default behaviour."""
        with self._lock:
            self.requests.clear()
        self.mode = "ok"
        self.reply_text = DEFAULT_REPLY
        self.slow_reply_text = SLOW_REPLY
        self.token_delay_s = 0.0

    def start(self) -> FakeOpenAI:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hung and streaming handlers are released, not waited for."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--reply-text", default=DEFAULT_REPLY)
    parser.add_argument("--require-key", default=None)
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    fake = FakeOpenAI(
        args.host,
        args.port,
        mode=args.mode,
        reply_text=args.reply_text,
        token_delay_s=args.token_delay,
        require_key=args.require_key,
        verbose=args.verbose,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    fake.start()
    print(f"ready {fake.port}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()

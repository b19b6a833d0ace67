"""Page load with an empty cache in headless Chromium: bytes transferred, time to a usable composer.

    python -m bench.page [--runs N] [--compression FORMATS] [--no-floor]

Serves the app as `make run` does (tests/e2e/server.py: migrate, `reflex run --env prod
--single-port`) on a fresh data dir and loads `/` N times (after one warm-up load), each time in
a new browser context: empty HTTP cache, no localStorage, so every load is a first visit that
downloads every asset and gets a new session.

Bytes: Chromium's own count, CDP `Network.loadingFinished.encodedDataLength` summed over every
HTTP response of the load: the bytes on the wire, i.e. compressed bodies plus response headers.
The decoded size (CDP `Network.dataReceived.dataLength`) and the websocket frames are reported
beside it. The load ends when the composer is usable and the network has been idle for 500 ms,
so chunks fetched lazily after the first render count too.

Time: in the page, `performance.now()` (0 = navigation start), stamped by a MutationObserver
installed before any page script runs: ready = the textbox "Message" is in the DOM and enabled
and the session badge shows an 8-character id, i.e. the websocket connected, the hydrate ran and
the page-load flow (`SessionState.load_session`) issued a session; the textbox must also be
hydrated by React (its Enter-to-send handler attached), since the prerendered one is enabled
before any script runs.

Baseline, same loads: the static shell of the same page, DOMContentLoaded and first contentful
paint from the Navigation and Paint Timing APIs. Floor, same run: a blank Reflex page
(bench/blank_page) whose page passes the same probe, loaded in turn with ours (`--no-floor`
skips it). Targets (the issue): ≤ 400 KB, ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import (
    add_repo_root,
    add_results_option,
    fmt_runs,
    markdown_table,
    median,
    publish,
    verdict,
)

MODULE = "bench.page"
KB = 1000
TARGET_BYTES = 400 * KB
TARGET_MS = 300.0
BLANK_PAGE_DIR = Path(__file__).parent / "blank_page"
BLANK_START_TIMEOUT_S = 600  # a first production build under load
FLOOR_NOTE = (
    "Floor: bench/blank_page, a blank Reflex app (`rx.App()` as `reflex init` makes it) whose "
    "page passes the same probe: a textarea labelled Message with a key handler, and a badge "
    "filled with 8 characters by an on_load handler (no database). Served the same way, loaded "
    "in turn with ours in the same browser. What ours takes above it is our own cost; the "
    "framework's is what it takes."
)
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]

# Runs before any page script: stamps the websocket's milestones and the moment the composer
# becomes usable. The WebSocket subclass only listens; socket.io-client picks it up because it
# reads `WebSocket` from the global object when its module is evaluated, after this script.
PROBE = """(() => {
  const b = window.__bench = {ready: null, wsCreated: null, wsOpen: null, hydrateSent: null,
                              firstDelta: null};
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      b.wsCreated ??= performance.now();
      this.addEventListener('open', () => { b.wsOpen ??= performance.now(); });
      this.addEventListener('message', (e) => {
        const delta = typeof e.data === 'string' && e.data.startsWith('42');
        if (delta) b.firstDelta ??= performance.now();
      });
    }
    send(data) {
      if (typeof data === 'string' && data.startsWith('40')) b.hydrateSent ??= performance.now();
      super.send(data);
    }
  };
  // The prerendered textarea is enabled before any script runs; only once React has hydrated it
  // does Enter send (its onKeyDown) instead of doing nothing, so that is checked too.
  const hydrated = (el) => Object.keys(el).some(
    (key) => key.startsWith('__reactProps') && typeof el[key].onKeyDown === 'function');
  const usable = () => {
    const box = document.querySelector('textarea[aria-label="Message"]');
    const id = document.querySelector('[data-testid="session-short-id"]');
    return box !== null && !box.disabled && !box.readOnly && hydrated(box)
      && id !== null && id.textContent.trim().length === 8;
  };
  const observer = new MutationObserver(() => {
    if (b.ready === null && usable()) {
      b.ready = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, {subtree: true, childList: true, characterData: true,
                              attributes: true});
})()"""

TIMINGS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {...window.__bench, html: nav.responseEnd,
          dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          fcp: fcp ? fcp.startTime : null};
}"""


@dataclass
class Response:
    url: str = ""
    kind: str = ""
    encoding: str = ""
    server: str = ""
    wire: int = 0
    decoded: int = 0


@dataclass
class Load:
    """One page load: timings in ms since navigation start, byte counts, main-thread work."""

    timings: dict[str, float]
    responses: list[Response]
    ws_received: int
    ws_sent: int
    main_thread_ms: dict[str, float] = field(default_factory=dict)

    @property
    def wire(self) -> int:
        return sum(response.wire for response in self.responses)

    @property
    def decoded(self) -> int:
        return sum(response.decoded for response in self.responses)


def load_once(browser, url: str) -> Load:
    """Open `url` in a new context (empty cache and storage) and wait until it is usable."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(PROBE)
        cdp = context.new_cdp_session(page)
        responses: dict[str, Response] = {}
        websocket = {"received": 0, "sent": 0}

        def on_request(event: dict) -> None:
            responses.setdefault(event["requestId"], Response()).url = event["request"]["url"]

        def on_response(event: dict) -> None:
            response = responses.setdefault(event["requestId"], Response())
            headers = {key.lower(): value for key, value in event["response"]["headers"].items()}
            response.kind = event["type"]
            response.encoding = headers.get("content-encoding", "")
            response.server = headers.get("server", "")

        def on_data(event: dict) -> None:
            responses.setdefault(event["requestId"], Response()).decoded += event["dataLength"]

        def on_finished(event: dict) -> None:
            responses.setdefault(event["requestId"], Response()).wire = event["encodedDataLength"]

        def on_frame(direction: str):
            def count(event: dict) -> None:
                websocket[direction] += len(event["response"]["payloadData"].encode())
            return count

        cdp.on("Network.requestWillBeSent", on_request)
        cdp.on("Network.responseReceived", on_response)
        cdp.on("Network.dataReceived", on_data)
        cdp.on("Network.loadingFinished", on_finished)
        cdp.on("Network.webSocketFrameReceived", on_frame("received"))
        cdp.on("Network.webSocketFrameSent", on_frame("sent"))
        cdp.send("Network.enable")
        cdp.send("Performance.enable")
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__bench.ready !== null", timeout=30_000)
        page.wait_for_load_state("networkidle")
        timings = page.evaluate(TIMINGS)
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        main_thread_ms = {
            "script": metrics.get("ScriptDuration", 0) * 1000,
            "style": metrics.get("RecalcStyleDuration", 0) * 1000,
            "layout": metrics.get("LayoutDuration", 0) * 1000,
            "all tasks": metrics.get("TaskDuration", 0) * 1000,
        }
        finished = [response for response in responses.values() if response.wire]
        return Load(timings, finished, websocket["received"], websocket["sent"], main_thread_ms)
    finally:
        context.close()


def measure(urls: list[str], runs: int) -> list[list[Load]]:
    """Per url: one warm-up load, then `runs` measured ones, each in a fresh context; the
    urls take turns, so that the machine's swings fall on each alike."""
    from playwright.sync_api import sync_playwright

    loads: list[list[Load]] = [[] for _ in urls]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None,
            args=CHROMIUM_ARGS,
        )
        try:
            for index in range(runs + 1):
                for url, kept in zip(urls, loads, strict=True):
                    load = load_once(browser, url)
                    if index:
                        kept.append(load)
        finally:
            browser.close()
    return loads


@contextlib.contextmanager
def blank_page(folder: Path) -> Iterator[str]:
    """bench/blank_page served as ours is (`reflex run --env prod --single-port`); its url."""
    from tests.e2e.server import app_env, free_port

    port = free_port()
    log = folder / "blank-page.log"
    folder.mkdir(parents=True, exist_ok=True)
    reflex = Path(sys.executable).parent / "reflex"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(reflex), "run", "--env", "prod", "--single-port", "--frontend-port", str(port),
             "--backend-port", str(port)],
            cwd=BLANK_PAGE_DIR, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, env=app_env(folder / "data"),
        )
    url = f"http://localhost:{port}/"
    try:
        deadline = time.monotonic() + BLANK_START_TIMEOUT_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench/blank_page did not start:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def kb(values: list[float]) -> str:
    return fmt_runs([value / KB for value in values], ".1f")


def served_by(load: Load) -> str:
    """`granian; content-encoding br 12, none 1` from the responses' own headers."""
    encodings = Counter(response.encoding or "none" for response in load.responses)
    servers = sorted({response.server for response in load.responses if response.server})
    return (f"{', '.join(servers) or 'unknown server'}; content-encoding "
            + ", ".join(f"{name} {count}" for name, count in encodings.most_common()))


def summary_table(
    loads: list[Load], runs: int, compression: str, floor: list[Load] | None = None
) -> str:
    wire = [load.wire for load in loads]
    ready = [load.timings["ready"] for load in loads]
    dcl = [load.timings["dcl"] for load in loads]
    fcp = [load.timings["fcp"] for load in loads if load.timings["fcp"] is not None]

    def timing(name: str) -> list[float]:
        return [load.timings[name] for load in loads]

    def work(name: str) -> list[float]:
        return [load.main_thread_ms[name] for load in loads]

    rows = [
        ["Bytes on the wire, every HTTP response (KB)", kb(wire), "≤ 400",
         verdict(median(wire) <= TARGET_BYTES)],
        ["… decoded (uncompressed) size (KB)", kb([load.decoded for load in loads]), "", ""],
        ["… HTTP responses", fmt_runs([len(load.responses) for load in loads], ".0f"), "", ""],
        ["Websocket frames received / sent (KB)",
         f"{median([load.ws_received for load in loads]) / KB:.1f} / "
         f"{median([load.ws_sent for load in loads]) / KB:.1f}", "", ""],
        ["Composer usable: textbox enabled + session id in the badge (ms)",
         fmt_runs(ready, ".0f"), "≤ 300", verdict(median(ready) <= TARGET_MS)],
        ["Baseline, static shell: DOMContentLoaded (ms)", fmt_runs(dcl, ".0f"), "",
         f"usable / DCL = {median(ready) / median(dcl):.2f}"],
        ["Baseline, static shell: first contentful paint (ms)",
         fmt_runs(fcp, ".0f") if fcp else "-", "", ""],
        ["Breakdown: HTML received (responseEnd, ms)", fmt_runs(timing("html"), ".0f"), "", ""],
        ["… websocket created (socket.io transport, ms)", fmt_runs(timing("wsCreated"), ".0f"),
         "", ""],
        ["… websocket open (ms)", fmt_runs(timing("wsOpen"), ".0f"), "", ""],
        ["… CONNECT + hydrate_and_load sent (React mounted, ms)",
         fmt_runs(timing("hydrateSent"), ".0f"), "", ""],
        ["… first state delta received (ms)", fmt_runs(timing("firstDelta"), ".0f"), "", ""],
        ["… load event end (ms)", fmt_runs(timing("load"), ".0f"), "", ""],
        ["Main thread until idle: script / style / layout / all tasks (ms)",
         " / ".join(f"{median(work(name)):.0f}"
                    for name in ("script", "style", "layout", "all tasks")), "", ""],
    ]
    if floor:
        floor_ready = [load.timings["ready"] for load in floor]
        rows += [
            ["Floor, blank Reflex page (bench/blank_page): usable (ms)",
             fmt_runs(floor_ready, ".0f"), "",
             f"ours / blank = {median(ready) / median(floor_ready):.2f}"],
            ["… its DOMContentLoaded (ms)",
             fmt_runs([load.timings["dcl"] for load in floor], ".0f"), "", ""],
            ["… its bytes on the wire / decoded (KB)",
             f"{median([load.wire for load in floor]) / KB:.1f} / "
             f"{median([load.decoded for load in floor]) / KB:.1f}", "", ""],
        ]
    return markdown_table(
        f"Page load, empty cache, headless Chromium (median of {runs})",
        MODULE,
        ["Measure", "Median (every run)", "Target", "Verdict"],
        rows,
        notes=[
            "Each load in a new browser context (empty cache, no storage: a first visit that "
            "creates a session); one warm-up load before the measured ones.",
            "Bytes on the wire = CDP `Network.loadingFinished.encodedDataLength` (compressed "
            "body + response headers) summed over every HTTP response until the network is "
            "idle after the composer is usable; KB = 1000 bytes.",
            "Times are `performance.now()` in the page (0 = navigation start); the websocket "
            "is not an HTTP response and its frames are listed separately.",
            f"Served by `reflex run --env prod --single-port`, SQLite, 1 worker "
            f"({served_by(loads[-1])}); precompressed formats: {compression}. Load average at "
            f"the end: {os.getloadavg()[0]:.1f} (the machine is shared; times swing with it).",
            *([FLOOR_NOTE] if floor else []),
        ],
    )


def largest_table(load: Load, top: int = 10) -> str:
    total = load.wire
    rows = []
    for response in sorted(load.responses, key=lambda r: r.wire, reverse=True)[:top]:
        rows.append([
            f"`{urlsplit(response.url).path}`",
            response.kind,
            response.encoding or "none",
            f"{response.wire / KB:.1f}",
            f"{response.decoded / KB:.1f}",
            f"{100 * response.wire / total:.0f} %",
        ])
    return markdown_table(
        f"Page load: the {top} largest responses (last measured load)",
        MODULE,
        ["Path", "Type", "content-encoding", "Wire KB", "Decoded KB", "Share of wire bytes"],
        rows,
        notes=[f"All {len(load.responses)} responses: {total / KB:.1f} KB on the wire, "
               f"{load.decoded / KB:.1f} KB decoded."],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured loads (default 5)")
    parser.add_argument(
        "--compression", default="",
        help="override rxconfig's frontend_compression_formats for this run, e.g. brotli,gzip "
             "(sets REFLEX_FRONTEND_COMPRESSION_FORMATS; the first accepted format is served)")
    parser.add_argument(
        "--no-floor", action="store_true",
        help="skip the blank Reflex page (bench/blank_page; its first build takes ~1-2 min)")
    add_results_option(parser)
    args = parser.parse_args()
    add_repo_root()
    from tests.e2e.server import start_app

    overrides = {}
    if args.compression:
        overrides["REFLEX_FRONTEND_COMPRESSION_FORMATS"] = args.compression
    with tempfile.TemporaryDirectory(prefix="bench-page-") as folder, \
            contextlib.ExitStack() as servers:
        urls = [] if args.no_floor else [servers.enter_context(blank_page(Path(folder)))]
        app = start_app(Path(folder) / "data", **overrides)
        servers.callback(app.stop)
        *floor, loads = measure([*urls, app.url + "/"], args.runs)
    compression = args.compression or "rxconfig.py's frontend_compression_formats"
    publish(summary_table(loads, args.runs, compression, floor[0] if floor else None),
            args.results)
    publish(largest_table(loads[-1]), args.results)


if __name__ == "__main__":
    main()

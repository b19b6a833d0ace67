"""Send → first streamed token in a real browser, with the offline retrieval assistant.

    python -m bench.first_token [--runs N]

Serves the app as `make run` does (tests/e2e/server.py: migrate, `reflex run --env prod`) on a
fresh data dir, opens it in headless Chromium, uploads tests/data/corpus/handbook.pdf, then asks N
questions. The clock starts in the page at the Enter keydown and stops when the first piece of
the reply is painted into the streaming bubble (a MutationObserver, in the page, so Playwright's
own round trips are not measured). Each question in the run is answered from the PDF, so
retrieval (BM25 over its passages) is part of what is timed.

Baseline, same run, same page: pressing Enter on an empty composer until the refusal toast
is painted — one websocket event round trip through Reflex that does no work. The ratio says
what the chat turn (save the message, audit row, retrieval, start of the stream) costs on top
of the framework's own floor.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import (
    ROOT,
    add_repo_root,
    add_results_option,
    fmt_runs,
    markdown_table,
    median,
    publish,
)

MODULE = "bench.first_token"
QUESTIONS = [
    "How is the lens of the lamp cleaned?",
    "How often is the fog signal tested?",
    "What must a keeper do when a ship is in distress?",
    "How many spare lamps are kept?",
    "When are the weather reports sent?",
]
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]

# Installed once per page: stamps the Enter keydown and the first painted reply text.
PROBE = """() => {
  window.__bench = {start: null, first: null, toast: null};
  const box = document.getElementById('composer');
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      window.__bench.start = performance.now();
      window.__bench.first = null;
      window.__bench.toast = null;
    }
  }, true);
  new MutationObserver((records) => {
    const b = window.__bench;
    if (b.start === null) return;
    const body = document.querySelector('article[data-status=streaming] .message-body');
    if (b.first === null && body && body.textContent.trim()) b.first = performance.now();
    // A toast counts when its element is added after the keydown (old ones may linger).
    if (b.toast === null && records.some((r) => [...r.addedNodes].some((n) =>
          n.nodeType === 1 && (n.matches('[data-sonner-toast]')
                               || n.querySelector('[data-sonner-toast]'))
          && n.textContent.includes('Type a message before sending')))) {
      b.toast = performance.now();
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def measure(url: str, runs: int) -> tuple[list[float], list[float]]:
    """(first-token ms per question, empty-send toast ms per try)."""
    from playwright.sync_api import sync_playwright

    first_token: list[float] = []
    floor: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None,
            args=CHROMIUM_ARGS,
        )
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("() => (localStorage.getItem('sid') || '').length === 36")
        page.set_input_files("#attach input[type=file]",
                            str(ROOT / "tests" / "data" / "corpus" / "handbook.pdf"))
        page.get_by_role("button", name="Delete handbook.pdf").wait_for(timeout=30_000)
        page.evaluate(PROBE)
        box = page.get_by_role("textbox", name="Message")
        replies = page.locator("article[data-role=assistant]:not([data-status=streaming])")
        for index in range(runs + 1):  # the first of each is a warm-up
            box.fill(QUESTIONS[index % len(QUESTIONS)])
            box.press("Enter")
            page.wait_for_function("() => window.__bench.first !== null", timeout=30_000)
            elapsed = page.evaluate("() => window.__bench.first - window.__bench.start")
            replies.nth(index).wait_for(timeout=30_000)  # the reply is saved before the next
            if index:
                first_token.append(elapsed)
        for index in range(runs + 1):
            box.fill("")
            box.press("Enter")
            page.wait_for_function("() => window.__bench.toast !== null", timeout=30_000)
            elapsed = page.evaluate("() => window.__bench.toast - window.__bench.start")
            if index:
                floor.append(elapsed)
        browser.close()
    return first_token, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="questions timed (default 10)")
    add_results_option(parser)
    args = parser.parse_args()
    add_repo_root()
    from tests.e2e.server import start_app

    with tempfile.TemporaryDirectory(prefix="bench-first-token-") as folder:
        app = start_app(Path(folder) / "data")
        try:
            first_token, floor = measure(app.url, args.runs)
        finally:
            app.stop()
    ratio = median(first_token) / median(floor)
    publish(markdown_table(
        f"Send → first streamed token in the browser (median of {args.runs})",
        MODULE,
        ["Path", "Median ms (every run)", "Ratio vs floor"],
        [
            ["Send a question → first reply piece painted (retrieval assistant, 1 PDF)",
             fmt_runs(first_token, ".1f"), f"{ratio:.2f}"],
            ["Floor: Send an empty message → refusal toast painted",
             fmt_runs(floor, ".1f"), "1.00"],
        ],
        notes=[
            "Clock in the page: Enter keydown → DOM mutation (MutationObserver).",
            "Served by `reflex run --env prod` (granian, 1 worker), SQLite, local store.",
        ],
    ), args.results)


if __name__ == "__main__":
    main()

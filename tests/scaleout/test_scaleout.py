"""Two workers, no stickiness: PostgreSQL + Redis + SeaweedFS shared, a round-robin balancer.

Chainlit, Streamlit and Gradio keep sessions in process memory and ask for sticky sessions; here
any worker serves any request, and losing a worker loses nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.pages import UI_TIMEOUT_MS, open_app, toast, wait_for_session
from tests.scaleout.cluster import ADMIN_TOKEN, BURST_CREATE_LIMIT, Cluster, kill
from tests.seaweed import SeaweedServer

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
PICKER = "#attach input[type=file]"


def composer(page: Page):
    return page.get_by_role("textbox", name="Message")


def articles(page: Page, role: str):
    return page.get_by_role("log", name="Conversation").locator(f"article[data-role={role}]")


def send_and_wait(page: Page, text: str, replies: int) -> None:
    composer(page).fill(text)
    composer(page).press("Enter")
    expect(articles(page, "assistant").and_(page.locator(":not([data-status=streaming])"))
           ).to_have_count(replies, timeout=UI_TIMEOUT_MS)


def objects_under(seaweed: SeaweedServer, bucket: str, prefix: str) -> list[str]:
    listing = seaweed.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_browser_journey_spreads_over_both_workers(
    browser: Browser, cluster: Cluster, seaweed: SeaweedServer, bucket: str
) -> None:
    before = dict(cluster.balancer.forwarded)
    context = browser.new_context()
    page = context.new_page()
    sid = open_app(page, cluster.url)
    send_and_wait(page, "What can you do?", 1)
    page.set_input_files(PICKER, str(CORPUS / "sourdough_bread.txt"))
    expect(toast(page, "Uploaded sourdough_bread.txt")).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert objects_under(seaweed, bucket, f"sessions/{sid}/")  # in the shared S3 store
    send_and_wait(page, "How long does the dough rest in the fridge?", 2)
    expect(articles(page, "assistant").nth(1)).to_contain_text("sourdough_bread.txt")

    for _ in range(3):  # each reload is new connections: round robin moves them around
        page.reload()
        assert wait_for_session(page) == sid
        expect(articles(page, "user")).to_have_count(2, timeout=UI_TIMEOUT_MS)
    second_tab = context.new_page()
    assert open_app(second_tab, cluster.url) == sid  # same browser, same session
    expect(articles(second_tab, "assistant")).to_have_count(2, timeout=UI_TIMEOUT_MS)

    page.get_by_role("button", name="New session").click()
    dialog = page.get_by_role("alertdialog", name="Start a new session?")
    expect(dialog.get_by_test_id("reset-summary")).to_contain_text("4 messages")
    dialog.get_by_role("button", name="Erase and start new").click()
    new_sid = wait_for_session(page, not_equal=sid)
    expect(toast(page, "4 messages and 1 file erased")).to_be_visible(timeout=UI_TIMEOUT_MS)
    wait_for_session(second_tab, not_equal=sid)  # local storage sync: the other tab follows
    expect(articles(second_tab, "user")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    assert objects_under(seaweed, bucket, f"sessions/{sid}/") == []
    assert new_sid != sid
    context.close()

    served = {port: count - before.get(port, 0)
              for port, count in cluster.balancer.forwarded.items()}
    assert all(served.get(port, 0) > 0 for port in cluster.workers), served


def test_a_session_from_one_worker_is_resumed_reset_and_swept_by_the_other(
    cluster: Cluster, seaweed: SeaweedServer, bucket: str
) -> None:
    first, second = (cluster.worker_url(port) + "/api/v1" for port in cluster.workers)
    sid = httpx.post(f"{first}/session").json()["session_id"]
    headers = {"X-Session-Id": sid}
    assert httpx.get(f"{second}/session", headers=headers).status_code == 200
    uploaded = httpx.post(f"{first}/session/files", headers=headers,
                          files={"file": ("notes.txt", b"shared notes\n", "text/plain")})
    assert uploaded.status_code == 201, uploaded.text
    sent = httpx.post(f"{second}/session/messages", headers=headers,
                      json={"content": "What do the notes say?"}, timeout=30)
    assert sent.status_code == 200
    assert sent.json()["reply"]["citations"][0]["filename"] == "notes.txt"

    reset = httpx.post(f"{second}/session/reset", headers=headers)
    assert reset.status_code == 201
    assert httpx.get(f"{first}/session", headers=headers).status_code == 404
    new_headers = {"X-Session-Id": reset.json()["session_id"]}
    assert httpx.get(f"{first}/session/messages", headers=new_headers).json() == {"items": []}

    # An object left behind by a purge that never ran is swept by the other worker.
    orphan = f"sessions/{sid}/00000000-0000-4000-8000-000000000000"
    seaweed.client().put_object(Bucket=bucket, Key=orphan, Body=b"left behind")
    swept = httpx.post(f"{first}/admin/sweep",
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert swept.status_code == 200, swept.text
    assert swept.json()["deleted_objects"] >= 1
    assert objects_under(seaweed, bucket, f"sessions/{sid}/") == []


def test_a_burst_against_both_workers_is_limited_once(cluster: Cluster) -> None:
    # One client (its IP in X-Forwarded-For, the balancer being the trusted hop) hits both.
    client_ip = {"X-Forwarded-For": "203.0.113.50"}
    urls = [cluster.worker_url(port) + "/api/v1/session" for port in cluster.workers]
    statuses = [httpx.post(urls[n % 2], headers=client_ip).status_code for n in range(30)]
    assert statuses.count(201) == BURST_CREATE_LIMIT, statuses
    assert statuses.count(429) == 30 - BURST_CREATE_LIMIT
    assert set(statuses) == {201, 429}


def test_killing_a_worker_mid_conversation_loses_nothing(
    browser: Browser, cluster: Cluster
) -> None:
    page = browser.new_page()
    sid = open_app(page, cluster.url)
    send_and_wait(page, "First question before the crash", 1)
    victim_port = cluster.balancer.websockets[-1]  # the worker holding this page's websocket
    kill(cluster.workers[victim_port])

    # The page reconnects through the balancer to the surviving worker. Typing is not raced
    # against the page noticing the crash: an event written into the dead socket in that
    # moment never reaches a server (its text stays in the composer, which clears only once
    # a server saved the message), so the test waits for the reconnect, as a user would see.
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while cluster.balancer.websockets[-1] == victim_port and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert cluster.balancer.websockets[-1] != victim_port, "the page never reconnected"
    # Nothing was lost: the second turn works on the survivor and the history is intact.
    send_and_wait(page, "Second question after the crash", 2)
    page.reload()
    assert wait_for_session(page) == sid
    expect(articles(page, "user")).to_have_count(2, timeout=UI_TIMEOUT_MS)
    expect(articles(page, "user").nth(0)).to_contain_text("First question before the crash")
    expect(articles(page, "assistant")).to_have_count(2)
    assert cluster.balancer.websockets[-1] != victim_port
    page.close()

    # The replacement worker rejoins and serves the same session straight away.
    cluster.restart(victim_port)
    resumed = httpx.get(f"{cluster.worker_url(victim_port)}/api/v1/session/messages",
                        headers={"X-Session-Id": sid})
    assert resumed.status_code == 200
    assert len(resumed.json()["items"]) == 4

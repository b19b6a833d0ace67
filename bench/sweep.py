"""Sweep benchmark: `Sweeper.run` deleting N orphan objects vs raw boto3 list + delete_objects.

    python -m bench.sweep [--objects N] [--runs R] [--threads T] [--fill http|boto3]

Each measurement starts its own SeaweedFS server (tests/seaweed.py) in a temp dir and fills a
bucket with N tiny objects under `sessions/<uuid4>/<uuid4>` from 32 threads. No database row
owns them, so with CHAT_APP_ORPHAN_GRACE_MINUTES=0 every one is an orphan due for deletion.
Ours: `services.sweeper.run(ctx)` on an S3Store, with a fresh migrated SQLite database.
Baseline: boto3 list_objects_v2 paginator + delete_objects per page of 1000. Each run measures
both sides on fills of the same size, alternating which goes first; afterwards no filled key
may be left in the bucket.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from bench.common import (
    MB,
    RssSampler,
    add_repo_root,
    add_results_option,
    fmt_runs,
    markdown_table,
    median,
    publish,
    timed,
    verdict,
)

MODULE = "bench.sweep"
PREFIX = "sessions/"
BODY = b"orphan"
RATIO_TARGET = 1.3
#: The target scale; `make bench` stays within 15 minutes with it (see bench/README.md).
DEFAULT_OBJECTS = 100_000
RSS_TARGET_MB = 100


def boto3_fill_client(endpoint_url: str, threads: int) -> BaseClient:
    """A client whose connection pool fits `threads` concurrent PutObjects."""
    from tests.seaweed import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

    config = Config(
        max_pool_connections=threads, retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"}, signature_version="s3v4",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=REGION, config=config,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def _orphan_key() -> str:
    return f"{PREFIX}{uuid.uuid4()}/{uuid.uuid4()}"


def _in_threads(work: Callable[[list[str]], int], keys: list[str], threads: int) -> int:
    """Split `keys` between `threads` workers; returns the sum of what they return."""
    slices = [keys[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(work, slices))  # re-raises the first failure


def _boto3_worker(endpoint_url: str, bucket: str, threads: int,
                  method: str) -> Callable[[list[str]], int]:
    client = boto3_fill_client(endpoint_url, threads)

    def put(keys: list[str]) -> int:
        for key in keys:
            client.put_object(Bucket=bucket, Key=key, Body=BODY)
        return len(keys)

    def head(keys: list[str]) -> int:
        found = 0
        for key in keys:
            try:
                client.head_object(Bucket=bucket, Key=key)
                found += 1
            except client.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                    raise
        return found

    return put if method == "PUT" else head


def _http_worker(endpoint_url: str, bucket: str, method: str) -> Callable[[list[str]], int]:
    # Plain PutObject/HeadObject requests, unsigned (SeaweedFS without an identity config takes
    # them), one keep-alive connection per thread: 0.35 ms of our CPU per request instead of
    # boto3's 2.8 ms, CPU that SeaweedFS needs on a 2-core machine.
    url = urlsplit(endpoint_url)
    expected = {200} if method == "PUT" else {200, 404}

    def send(keys: list[str]) -> int:
        found = 0
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            for key in keys:
                connection.request(method, f"/{bucket}/{key}",
                                   body=BODY if method == "PUT" else None)
                response = connection.getresponse()
                detail = response.read()
                if response.status not in expected:
                    raise RuntimeError(f"{method} {key} answered {response.status}: "
                                       f"{detail[:200]!r} (try --fill boto3)")
                found += response.status == 200
        finally:
            connection.close()
        return found

    return send


def fill(admin: BaseClient, endpoint_url: str, bucket: str, count: int, threads: int,
         how: str) -> tuple[float, list[str]]:
    """Create `bucket` and put `count` orphan objects into it; returns (seconds, keys)."""
    admin.create_bucket(Bucket=bucket)
    keys = [_orphan_key() for _ in range(count)]
    put = (_http_worker(endpoint_url, bucket, "PUT") if how == "http"
           else _boto3_worker(endpoint_url, bucket, threads, "PUT"))
    started = time.perf_counter()
    _in_threads(put, keys, threads)
    return time.perf_counter() - started, keys


def leftovers(admin: BaseClient, endpoint_url: str, bucket: str, keys: list[str],
              threads: int, how: str) -> int:
    """How many objects are in `bucket` after a sweep (0 when it is empty).

    Not one listing: until SeaweedFS has removed the N emptied `sessions/<uuid>/` folders (for
    many minutes), a listing walks all of them, ever slower as N grows (95 s for 50,000; one
    request for 100,000 failed with InternalError after 2 minutes, and 256 prefix-sharded
    listings took 11 minutes). Instead: a HEAD of every filled key (only the fill writes under
    `sessions/`), plus a full listing of anything outside `sessions/` (normally nothing).
    """
    head = (_http_worker(endpoint_url, bucket, "HEAD") if how == "http"
            else _boto3_worker(endpoint_url, bucket, threads, "HEAD"))
    count = _in_threads(head, keys, threads)
    top = admin.list_objects_v2(Bucket=bucket, Delimiter="/")
    count += len(top.get("Contents", []))
    paginator = admin.get_paginator("list_objects_v2")
    for item in top.get("CommonPrefixes", []):
        if item["Prefix"] != PREFIX:
            for page in paginator.paginate(Bucket=bucket, Prefix=item["Prefix"]):
                count += len(page.get("Contents", []))
    return count


def raw_sweep(client: BaseClient, bucket: str) -> int:
    """The baseline: list page by page, delete each page with one DeleteObjects."""
    deleted = 0
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=PREFIX, PaginationConfig={"PageSize": 1000}
    )
    for page in pages:
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
            )
            deleted += len(batch) - len(response.get("Errors", []))
    return deleted


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Side:
    """Measurements of one side (ours or the baseline)."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)


@dataclass
class Book:
    """Everything around the measurements: fill times, emptiness checks and their results."""

    fills: list[float] = field(default_factory=list)
    checks: list[float] = field(default_factory=list)
    leftovers: list[int] = field(default_factory=list)


#: Given a running server and a filled bucket, returns the sweep to time; it returns the
#: number of objects it deleted, or raises.
Prepare = Callable[[Any, str], Callable[[], int]]


def measure(
    side: Side, prepare: Prepare, run: int, root: Path, args: argparse.Namespace, book: Book,
) -> None:
    """One measurement on its own SeaweedFS server: fill, time the sweep, check the bucket.

    A fresh server per measurement: SeaweedFS removes the 100,000 emptied `sessions/<uuid>/`
    folders in the background for many minutes after a sweep, and that must not slow the next
    measurement down.
    """
    from tests.seaweed import SeaweedServer

    server = SeaweedServer(root / f"weed-{side.name}-{run}")
    server.start()
    try:
        admin = server.client()
        bucket = f"bench-{side.name}-{run}"
        seconds, keys = fill(admin, server.endpoint_url, bucket, args.objects, args.threads,
                             args.fill)
        book.fills.append(seconds)
        print(f"run {run}, {side.name}: filled {args.objects:,} objects in {seconds:.1f} s",
              flush=True)
        sweep = prepare(server, bucket)
        time.sleep(1.1)  # LastModified has 1 s resolution: every object is now past due
        cpu = cpu_seconds()
        with RssSampler() as rss, timed() as elapsed:
            deleted = sweep()
        side.cpu.append(cpu_seconds() - cpu)
        side.wall.append(elapsed[0])
        side.rss_mb.append(rss.growth / MB)
        if deleted != args.objects:
            raise RuntimeError(f"{side.name} deleted {deleted:,} of {args.objects:,} objects")
        print(f"run {run}, {side.name}: swept in {elapsed[0]:.2f} s", flush=True)
        with timed() as checking:
            book.leftovers.append(leftovers(admin, server.endpoint_url, bucket, keys,
                                            args.threads, args.fill))
        book.checks.append(checking[0])
        print(f"run {run}, {side.name}: {book.leftovers[-1]} objects left (checked in "
              f"{checking[0]:.1f} s)", flush=True)
    except BaseException:
        print(f"weed log tail:\n{server.log_tail(30)}", file=sys.stderr)
        raise
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sweep", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--objects", type=int, default=DEFAULT_OBJECTS, help="orphans per fill")
    parser.add_argument("--runs", type=int, default=1, help="measurements of each side")
    parser.add_argument("--threads", type=int, default=32, help="PutObject threads for a fill")
    parser.add_argument("--fill", choices=("http", "boto3"), default="http",
                        help="fill with plain PutObject requests (default) or boto3 put_object")
    add_results_option(parser)
    args = parser.parse_args(argv)
    if args.objects < 1 or args.runs < 1 or args.threads < 1:
        parser.error("--objects, --runs and --threads must be at least 1")
    add_repo_root()
    from chat_app.container import build_services
    from chat_app.migrations import upgrade
    from chat_app.services.audit import RequestContext
    from chat_app.settings import Settings
    from chat_app.storage.s3 import S3Store
    from tests.seaweed import REGION

    ours, base = Side("ours"), Side("baseline")
    book = Book()
    problems: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chat-app-bench-sweep-") as temp:
        root = Path(temp)
        database_url = f"sqlite:///{root / 'chat_app.db'}"
        upgrade(database_url)
        settings = Settings(
            CHAT_APP_DATA_DIR=str(root / "data"), DATABASE_URL=database_url,
            CHAT_APP_ORPHAN_GRACE_MINUTES=0, CHAT_APP_SECRET_KEY="bench-secret",
        )
        ctx = RequestContext(actor="cli")

        def prepare_ours(server: Any, bucket: str) -> Callable[[], int]:
            store = S3Store(bucket, endpoint_url=server.endpoint_url, region=REGION,
                            client=server.client())
            services = build_services(settings, store=store)

            def sweep() -> int:
                report = services.sweeper.run(ctx)
                if report.errors:
                    problems.append(f"Ours reported errors: {report.error_kinds}.")
                return report.deleted_objects

            return sweep

        def prepare_baseline(server: Any, bucket: str) -> Callable[[], int]:
            client = server.client()  # configured exactly like the store's client
            return lambda: raw_sweep(client, bucket)

        for run in range(args.runs):
            order = [(ours, prepare_ours), (base, prepare_baseline)]
            for side, prepare in order if run % 2 == 0 else order[::-1]:
                measure(side, prepare, run, root, args, book)
    total = time.perf_counter() - started

    ratio = median(ours.wall) / median(base.wall)
    rss_worst = max(ours.rss_mb)
    rows = [
        ("Wall time, s: median (each run)", fmt_runs(ours.wall), fmt_runs(base.wall), "", ""),
        ("Objects deleted per second (median)", f"{args.objects / median(ours.wall):,.0f}",
         f"{args.objects / median(base.wall):,.0f}", "", ""),
        ("Wall time ratio ours/baseline", f"{ratio:.2f}", "1.00", f"≤ {RATIO_TARGET}",
         verdict(ratio <= RATIO_TARGET)),
        ("Python CPU time, s (median)", f"{median(ours.cpu):.2f}", f"{median(base.cpu):.2f}",
         "", "info"),
        ("Peak RSS growth, MB (worst run)", f"{rss_worst:.1f}", f"{max(base.rss_mb):.1f}",
         f"< {RSS_TARGET_MB}", verdict(rss_worst < RSS_TARGET_MB)),
        ("Objects left afterwards (see notes)", f"{sum(book.leftovers):,}", "", "0",
         verdict(not any(book.leftovers))),
    ]
    fill_how = ("plain unsigned PutObject requests (http.client, one keep-alive connection "
                "per thread)" if args.fill == "http" else "boto3 `put_object`")
    notes = [
        f"{args.objects:,} orphan objects per fill, {args.runs} run(s) of each side (order "
        f"alternates between runs); each fill used {args.threads} threads sending {fill_how} "
        f"and took {fmt_runs(book.fills, '.1f')} s.",
        "Objects left: a HEAD of every filled key plus a listing of anything outside "
        "`sessions/` (a plain listing walks the emptied folders SeaweedFS has not removed yet, "
        f"minutes at this size); the checks took {fmt_runs(book.checks, '.1f')} s.",
        "Ours: `services.sweeper.run(ctx)` on an S3Store (SeaweedFS from tests/seaweed.py, "
        "fresh migrated SQLite database, CHAT_APP_ORPHAN_GRACE_MINUTES=0). Baseline: boto3 "
        "`list_objects_v2` paginator + `delete_objects` per page of 1000, through an "
        "identically configured client.",
        "Every measurement runs on its own fresh SeaweedFS server and bucket. RSS growth: peak "
        "VmRSS (sampled every 10 ms) above the RSS just before the call.",
        f"Whole benchmark (fills, server starts, emptiness checks included): {total:.0f} s.",
        *problems,
    ]
    publish(markdown_table(
        f"Sweep of {args.objects:,} orphan objects (S3Store on SeaweedFS)", MODULE,
        ("Metric", "Ours", "Baseline", "Target", "Result"), rows, notes,
    ), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

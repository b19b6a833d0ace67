"""Upload benchmark: 100 MB through `upload_stream` into an S3Store vs raw `upload_fileobj`.

    python -m bench.upload [--mb SIZE] [--runs R] [--profile]

SeaweedFS (tests/seaweed.py) runs in a temp dir; the database is a fresh migrated SQLite file
(CHAT_APP_MAX_UPLOAD_MB=200, CHAT_APP_ALLOWED_EXTENSIONS=txt). Every upload reads a generator-
backed file-like object that makes repeating text on demand, so the source never holds the file.
Ours: `upload_stream` (validate, pending row, S3Writer multipart with the production 8 MiB part
size, re-check, stored row). Raw: boto3 `upload_fileobj` (s3transfer's defaults: 8 MB parts,
10 threads) of the same stream through an identically configured client. LocalStore: our
`upload_stream` into the local folder store, for information. One warm-up of each side first.
--profile: one more upload of ours (S3Store) under cProfile, its top functions printed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

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

MODULE = "bench.upload"
RATIO_TARGET = 0.8
RSS_TARGET_MB = 64
_LINE = b"The quick brown fox jumps over the lazy dog; 0123456789 pack my box with jugs.\n"


class TextStream:
    """A read-only binary stream of `size` bytes of repeating text, made on demand."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._position = 0
        # About 2 MiB of whole lines: any read of up to 1 MiB is one slice of it.
        self._block = _LINE * (2 * 2**20 // len(_LINE) + 1)

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        left = self._size - self._position
        wanted = left if n is None or n < 0 else min(n, left)
        if wanted <= 0:
            return b""
        start = self._position % len(_LINE)
        if start + wanted <= len(self._block):
            data = self._block[start:start + wanted]
        else:  # a read bigger than the block: build it (upload_stream never asks for one)
            parts, remaining = [], wanted
            while remaining:
                piece = self._block[start:start + remaining]
                parts.append(piece)
                remaining -= len(piece)
                start = 0
            data = b"".join(parts)
        self._position += wanted
        return data


class Side:
    """The measurements of one way of uploading."""

    def __init__(self, name: str, upload: Callable[[], int]) -> None:
        self.name = name
        self.upload = upload
        self.seconds: list[float] = []
        self.rss_mb: list[float] = []

    def measure(self, size: int, *, warm_up: bool = False) -> None:
        """One upload; a warm-up's time is not kept, its RSS growth is (the first call of a
        process shows the most growth: later ones reuse memory the allocator kept)."""
        with RssSampler() as rss, timed() as elapsed:
            written = self.upload()
        if written != size:
            raise RuntimeError(f"{self.name}: stored {written} bytes, expected {size}")
        if not warm_up:
            self.seconds.append(elapsed[0])
        self.rss_mb.append(rss.growth / MB)
        print(f"{self.name}: {elapsed[0]:.2f} s, {size / MB / elapsed[0]:.1f} MB/s, "
              f"RSS +{rss.growth / MB:.1f} MB" + (" (warm-up)" if warm_up else ""), flush=True)

    def throughputs(self, size: int) -> list[float]:
        return [size / MB / seconds for seconds in self.seconds]


def profile(side: Side) -> None:
    """One more upload under cProfile: the most expensive calls (cumulative), then the app's own
    functions, which show the phases (feed/S3 parts, extraction, the stored transaction)."""
    profiler = cProfile.Profile()
    profiler.runcall(side.upload)
    stats = pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative")
    stats.print_stats(20)
    stats.print_stats(r"chat_app[/\\]", 25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.upload", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mb", type=int, default=100, help="upload size in MB (10^6 bytes)")
    parser.add_argument("--runs", type=int, default=5, help="measured uploads of each side")
    parser.add_argument("--profile", action="store_true",
                        help="then profile one more upload of ours (S3Store) and print where "
                             "its time went")
    add_results_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.mb <= 200 or args.runs < 1:
        parser.error("--mb must be 1..200 (the upload limit is 200 MiB), --runs at least 1")
    size = args.mb * MB
    add_repo_root()
    from chat_app.container import Services, build_services
    from chat_app.migrations import upgrade
    from chat_app.services.audit import RequestContext
    from chat_app.services.uploads import upload_stream
    from chat_app.settings import Settings
    from chat_app.storage.s3 import S3Store
    from tests.seaweed import REGION, SeaweedServer

    with tempfile.TemporaryDirectory(prefix="chat-app-bench-upload-") as temp:
        root = Path(temp)
        server = SeaweedServer(root / "weed")
        server.start()
        try:
            database_url = f"sqlite:///{root / 'chat_app.db'}"
            upgrade(database_url)
            settings = Settings(
                CHAT_APP_DATA_DIR=str(root / "data"), DATABASE_URL=database_url,
                CHAT_APP_MAX_UPLOAD_MB=200, CHAT_APP_ALLOWED_EXTENSIONS="txt",
                CHAT_APP_SECRET_KEY="bench-secret",
            )
            bucket = "bench-upload"
            server.client().create_bucket(Bucket=bucket)
            store = S3Store(bucket, endpoint_url=server.endpoint_url, region=REGION,
                            client=server.client())  # default part size, as in production
            s3_services = build_services(settings, store=store)
            local_services = build_services(settings)  # no bucket: LocalStore in the data dir
            raw_client = server.client()
            ctx = RequestContext(actor="api")

            def ours(services: Services) -> Callable[[], int]:
                def upload() -> int:
                    session = services.sessions.create(ctx, reason="api")
                    view = upload_stream(services.files, session.uuid, "bench.txt",
                                         TextStream(size), ctx)
                    return view.size_bytes
                return upload

            def raw() -> int:
                key = f"raw/{uuid.uuid4()}"
                raw_client.upload_fileobj(TextStream(size), bucket, key)
                return raw_client.head_object(Bucket=bucket, Key=key)["ContentLength"]

            s3_side = Side("ours (S3Store)", ours(s3_services))
            raw_side = Side("raw upload_fileobj", raw)
            local_side = Side("ours (LocalStore)", ours(local_services))
            sides = [s3_side, raw_side, local_side]
            for side in sides:
                side.measure(size, warm_up=True)
            for run in range(args.runs):
                for side in sides[run % 3:] + sides[:run % 3]:  # rotate the order
                    side.measure(size)
            if args.profile:
                profile(s3_side)
        finally:
            server.stop()

    ours_mbps = median(s3_side.throughputs(size))
    raw_mbps = median(raw_side.throughputs(size))
    ratio = ours_mbps / raw_mbps
    rss_worst = max(s3_side.rss_mb)
    rows = [
        ("ours: `upload_stream` → S3Store", fmt_runs(s3_side.seconds),
         fmt_runs(s3_side.throughputs(size), ".1f"), f"{ratio:.2f}", f"{rss_worst:.1f}",
         f"ratio ≥ {RATIO_TARGET}: {verdict(ratio >= RATIO_TARGET)}; RSS ≤ {RSS_TARGET_MB} "
         f"MB: {verdict(rss_worst <= RSS_TARGET_MB)}"),
        ("baseline: boto3 `upload_fileobj`", fmt_runs(raw_side.seconds),
         fmt_runs(raw_side.throughputs(size), ".1f"), "1.00", f"{max(raw_side.rss_mb):.1f}",
         ""),
        ("ours: `upload_stream` → LocalStore", fmt_runs(local_side.seconds),
         fmt_runs(local_side.throughputs(size), ".1f"),
         f"{median(local_side.throughputs(size)) / raw_mbps:.2f}",
         f"{max(local_side.rss_mb):.1f}", "information only"),
    ]
    notes = [
        f"{args.mb} MB (10^6 bytes) per upload, {args.runs} measured upload(s) of each side "
        "after one warm-up each, order rotated between runs; MB/s counts 10^6 bytes.",
        "Peak RSS growth: VmRSS sampled every 10 ms, peak minus the RSS just before the call; "
        "the worst call, warm-up included.",
        "Source: a file-like object making repeating text on demand (never holds the file).",
        "Ours sends up to 2 parts of 8 MiB at once while the next one fills (S3Writer, "
        "PARTS_IN_FLIGHT); "
        "`upload_fileobj` keeps up to 10 parts of 8 MiB in flight and buffers them.",
    ]
    publish(markdown_table(
        f"Upload of {args.mb} MB (SeaweedFS)", MODULE,
        ("Path", "Wall time, s: median (each run)", "Throughput, MB/s: median (each run)",
         "Ratio vs baseline", "Peak RSS growth, MB", "Target"), rows, notes,
    ), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

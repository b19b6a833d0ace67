"""A real S3-compatible server for tests: SeaweedFS's `weed server` on free local ports."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from botocore.client import BaseClient

from tests.s3_buckets import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    S3StoreFactory,
    cached_client,
)

# Re-exported: tests and benchmarks import the credentials and the factory from here.
__all__ = ["ACCESS_KEY_ID", "REGION", "SECRET_ACCESS_KEY", "S3StoreFactory", "SeaweedServer"]

_PROBE_BUCKET = "weed-readiness-probe"
_MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\n"
# weed listens on port + 10000 for each service's gRPC side.
_GRPC_OFFSET = 10000


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 whose +10000 twins are free as well."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            main = socket.socket()
            main.bind(("127.0.0.1", 0))
            held.append(main)
            port = main.getsockname()[1]
            if port + _GRPC_OFFSET > 65535:
                continue
            twin = socket.socket()
            try:
                twin.bind(("127.0.0.1", port + _GRPC_OFFSET))
            except OSError:
                twin.close()
                continue
            held.append(twin)
            ports.append(port)
    finally:
        # Holding every socket until all are chosen keeps the picks distinct.
        for sock in held:
            sock.close()
    return ports


# Looked up now, in the parent: the forked child must not load libraries or import anything.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: take SIGKILL when pytest dies, so no weed outlives a killed run."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _probe(client: BaseClient) -> None:
    """Write and read back one object: S3 answering is not enough, volumes must be registered."""
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=_PROBE_BUCKET)
    client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ok")
    if client.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read() != b"ok":
        raise RuntimeError("SeaweedFS returned the wrong probe bytes")


class SeaweedServer:
    """One `weed server` (master, volume, filer, S3) in its own process group."""

    def __init__(self, data_dir: Path, *, binary: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary or Path(sys.executable).parent / "weed"
        self.s3_port, self.master_port, self.volume_port, self.filer_port = _free_ports(4)
        self.log_path = self.data_dir / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None
        #: Emptied buckets for later tests: a new bucket's first write costs ~0.2 s (volume growth).
        self.spare_buckets: list[str] = []

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.s3_port}"

    def command(self) -> list[str]:
        """The `weed server` command line."""
        return [
            str(self.binary), f"-logdir={self.data_dir / 'logs'}", "server",
            f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}", f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}", "-s3", f"-s3.port={self.s3_port}",
            # Small volumes, never preallocated: each bucket gets its own few volumes.
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            # Off: these listen on fixed default ports that a second server would collide on.
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # A lone master restarting waits one election timeout (10 s by default) to lead again.
            "-master.electionTimeout=1s",
        ]

    def client(self, **options: float) -> BaseClient:
        """A boto3 client for this server with the test credentials (shared, thread-safe)."""
        return cached_client(self.endpoint_url, **options)

    def fill(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Write objects through the filer's HTTP API: about twice as fast as S3 for bulk data."""
        local = threading.local()
        opened: list[http.client.HTTPConnection] = []

        def put(key: str) -> None:
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection("127.0.0.1", self.filer_port, timeout=30)
                opened.append(local.conn)
            local.conn.request("PUT", f"/buckets/{bucket}/{key}", body=objects[key])
            response = local.conn.getresponse()
            response.read()
            if response.status not in (200, 201):
                raise RuntimeError(f"filer PUT {key} answered {response.status}")

        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(put, objects))
        finally:
            for conn in opened:
                conn.close()

    def start(self, timeout_s: float = 20) -> None:
        """Start the server and wait until S3 answers (about 3 s)."""
        self.launch()
        self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Spawn `weed server` without waiting for it (then `wait_ready`, from any thread).

        Call it from a thread that outlives the server: PR_SET_PDEATHSIG fires when the thread
        that forked the child ends, not the process, so a server launched from a worker thread
        (asyncio.to_thread) is killed when the executor retires that thread.
        """
        if self._process is not None:
            raise RuntimeError("SeaweedFS is already running")
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        # weed reads master.toml from its working directory: grow one volume per bucket, not seven.
        (self.data_dir / "master.toml").write_text(_MASTER_TOML)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,  # its own process group, so stop() reaches every child
                env={**os.environ, "TMPDIR": str(self.data_dir / "logs")},
                preexec_fn=_die_with_parent,
            )

    def wait_ready(self, timeout_s: float) -> None:
        """Until S3 writes and reads back a probe object; stops the server if it never does."""
        client = self.client(connect_timeout_s=1, read_timeout_s=2, max_attempts=1)
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"weed exited early:\n{self.log_tail()}")
            try:
                _probe(client)
                return
            except Exception as exc:  # not up yet: refused, 503 while the filer starts, no volumes
                if time.monotonic() > deadline:
                    self.stop()
                    message = f"SeaweedFS not ready in {timeout_s} s:\n{self.log_tail()}"
                    raise RuntimeError(message) from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Kill the whole process group (a graceful weed shutdown takes ~17 s) and wait for it."""
        if self._process is None:
            return
        process, self._process = self._process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        # weed leaves unix sockets named by port in /tmp whatever TMPDIR says.
        for port in (self.s3_port, self.master_port, self.volume_port, self.filer_port):
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port + _GRPC_OFFSET}.sock"):
                sock.unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop and start again on the same ports and data dir (objects survive)."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The end of weed's output, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

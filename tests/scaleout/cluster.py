"""Two app processes on two ports behind a round-robin balancer, sharing PostgreSQL, Redis, S3.

Worker A is `reflex run --env prod --single-port` (it builds the frontend, with the balancer's
URL baked in through REFLEX_API_URL, as a production build behind a load balancer must be).
Worker B serves the same build with Reflex's own production backend runner (gunicorn), so one
folder needs one build. Both read the same environment: the production configuration of SPEC 10.
Their PostgreSQL is reached through a TcpProxy (`Cluster.db_link`), so tests can fault it.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis
import sqlalchemy as sa

from tests.e2e.server import ServedApp, app_env, free_port, serve, start_app
from tests.faults import TcpProxy
from tests.scaleout.balancer import RoundRobinBalancer
from tests.seaweed import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, SeaweedServer

ADMIN_TOKEN = "scale-out-admin-token"
#: Redis database for the cluster's state manager and rate limits, flushed at start.
REDIS_DB = 7
# High enough for the browser journeys from 127.0.0.1; the burst test uses its own client IP.
CLUSTER_LIMITS = "validate=1000/minute,failed_validate=1000/minute,reset=1000/minute," \
    "read=1000/minute,upload=1000/minute,messages=1000/minute"
BURST_CREATE_LIMIT = 10


@dataclass
class Cluster:
    """The balancer's URL and each worker by its port."""

    balancer: RoundRobinBalancer
    #: The workers' link to PostgreSQL (cut, stall or freeze it to fault the database).
    db_link: TcpProxy
    #: The database itself, reached directly (for the tests' own look at the rows).
    database_url: str
    workers: dict[int, ServedApp] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.balancer.port}"

    def worker_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def restart(self, port: int) -> None:
        """Bring a (killed) worker back on its port, serving the existing build."""
        old = self.workers[port]
        old.stop()
        self.workers[port] = start_backend(old.data_dir, port, **self.env)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.balancer.close()


def cluster_env(database_url: str, seaweed: SeaweedServer, bucket: str, balancer_port: int,
                ) -> dict[str, str]:
    """The production configuration both workers share."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "CHAT_APP_S3_BUCKET": bucket,
        "CHAT_APP_S3_ENDPOINT_URL": seaweed.endpoint_url,
        "CHAT_APP_S3_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "CHAT_APP_ADMIN_TOKEN": ADMIN_TOKEN,
        "CHAT_APP_RATE_LIMITS": f"create={BURST_CREATE_LIMIT}/minute,{CLUSTER_LIMITS}",
        # The balancer is one trusted hop: tests may name a client IP in X-Forwarded-For.
        "CHAT_APP_TRUSTED_PROXY_HOPS": "1",
        "CHAT_APP_SECRET_KEY": "scale-out-shared-secret-key-0123456789",
        "CHAT_APP_SWEEP_INTERVAL_MINUTES": "0",
        "CHAT_APP_ORPHAN_GRACE_MINUTES": "0",
        # One backend process per worker (with Redis, rxconfig.py would start 2 x cores + 1).
        "WEB_CONCURRENCY": "1",
        "GRANIAN_WORKERS": "1",
        "REFLEX_API_URL": f"http://localhost:{balancer_port}",
    }


def start_cluster(folder: Path, database_url: str, seaweed: SeaweedServer, bucket: str, *,
                  db_link: TcpProxy) -> Cluster:
    """Both workers up and answering, behind the balancer, reaching PostgreSQL via `db_link`."""
    redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}").flushdb()
    ports = [free_port(), free_port()]
    balancer = RoundRobinBalancer(ports)
    linked_url = sa.engine.make_url(database_url).set(host="127.0.0.1", port=db_link.port)
    env = cluster_env(linked_url.render_as_string(hide_password=False), seaweed, bucket,
                      balancer.port)
    cluster = Cluster(balancer, db_link, database_url, env=env)
    try:
        cluster.workers[ports[0]] = start_app(folder / "a", port=ports[0], **cluster.env)
        cluster.workers[ports[1]] = start_backend(folder / "b", ports[1], **cluster.env)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_backend(data_dir: Path, port: int, **env_overrides: str) -> ServedApp:
    """Serve the existing build's backend and compiled frontend on `port` (no build)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tests.scaleout.serve_backend", str(port)]
    return serve(command, data_dir, port, app_env(data_dir, **env_overrides))


def kill(worker: ServedApp) -> None:
    """SIGKILL the whole process group: a crash, not a graceful stop."""
    if worker.process.poll() is None:
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(10)

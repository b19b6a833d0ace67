"""The cluster: two workers, a balancer, PostgreSQL, Redis and SeaweedFS, once for the package.

Package-scoped: every module here shares one production build and its two workers (a start is
~45 s); a test that breaks the cluster (kills a worker, cuts the database) mends it before it ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from chat_app import migrations
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.e2e.conftest import browser_type_launch_args  # noqa: F401  (system chromium)
from tests.faults import TcpProxy
from tests.scaleout.cluster import Cluster, start_cluster
from tests.seaweed import SeaweedServer


@pytest.fixture(scope="package")
def bucket(seaweed: SeaweedServer) -> Iterator[str]:
    """A bucket of the cluster's own on the shared SeaweedFS."""
    name = f"scaleout-{uuid.uuid4().hex[:12]}"
    client = seaweed.client()
    client.create_bucket(Bucket=name)
    yield name
    from tests.s3_buckets import drop_bucket

    drop_bucket(client, name)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory, seaweed: SeaweedServer, bucket: str) -> Iterator[Cluster]:
    """Two app workers on one fresh PostgreSQL database, Redis and S3, behind the balancer.

    The workers reach PostgreSQL through `cluster.db_link`, a TcpProxy tests can cut.
    """
    database_url = create_postgres_database()
    migrations.upgrade(database_url)  # the deploy step, once, before any worker starts
    target = sa.engine.make_url(database_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as db_link:
        served = start_cluster(tmp_path_factory.mktemp("cluster"), database_url, seaweed, bucket,
                               db_link=db_link)
        yield served
        served.stop()
    drop_postgres_database(database_url)

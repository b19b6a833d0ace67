"""The cluster: two workers, a balancer, PostgreSQL, Redis and SeaweedFS, once per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from chat_app import migrations
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.e2e.conftest import browser_type_launch_args  # noqa: F401  (system chromium)
from tests.scaleout.cluster import Cluster, start_cluster
from tests.seaweed import SeaweedServer


@pytest.fixture(scope="module")
def bucket(seaweed: SeaweedServer) -> Iterator[str]:
    """A bucket of the cluster's own on the shared SeaweedFS."""
    name = f"scaleout-{uuid.uuid4().hex[:12]}"
    client = seaweed.client()
    client.create_bucket(Bucket=name)
    yield name
    from tests.s3_buckets import drop_bucket

    drop_bucket(client, name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, seaweed: SeaweedServer, bucket: str) -> Iterator[Cluster]:
    """Two app workers on one fresh PostgreSQL database, Redis and S3, behind the balancer."""
    database_url = create_postgres_database()
    migrations.upgrade(database_url)  # the deploy step, once, before any worker starts
    served = start_cluster(tmp_path_factory.mktemp("cluster"), database_url, seaweed, bucket)
    yield served
    served.stop()
    drop_postgres_database(database_url)

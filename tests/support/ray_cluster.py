"""A real 2-node Ray cluster on this machine, for the tests of the Ray jobs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray.cluster_utils import Cluster

from curation.support.engine import ensure_ray


@contextmanager
def two_node_ray() -> Iterator[None]:
    """This process joined to a ``ray.cluster_utils.Cluster`` of 2 nodes, one CPU each (any
    Ray this process had is stopped first); both stop at the end."""
    if ray.is_initialized():  # another test's local Ray: the cluster replaces it
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ensure_ray(cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()

"""The delivery, order and deduplication tests of one Redis, run again with the data on a
real Redis Cluster: three primaries with a replica each, six partitions, RQ on the test's
plain Redis. Each test below is the one-Redis test of the same name, collected here a second
time with ``settings`` naming the cluster, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from incidents.settings import Settings
from incidents.store.embedded_cluster import EmbeddedCluster
from tests.cluster_support import cluster_keys, on_cluster, stray_keys
from tests.test_delivery import (
    test_an_accepted_event_reaches_a_matching_subscription_signed,
    test_an_incident_is_delivered_in_order_while_others_are_not_held_up,
    test_binary_mode_sends_ce_headers_and_the_custom_headers,
    test_exhausted_retries_make_a_dead_letter_that_can_be_redriven,
    test_failures_are_retried_with_the_same_webhook_id_and_logged,
    test_retry_after_is_waited_out_in_full,
)
from tests.test_incidents import test_duplicate_event_is_not_applied_twice

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings: Settings, cluster: EmbeddedCluster) -> Settings:
    """The test's settings with the data on the cluster, in six partitions."""
    return on_cluster(settings, cluster, 6)


@pytest.fixture(autouse=True)
def _ran_on_the_cluster(cluster: EmbeddedCluster) -> Iterator[None]:
    """After each test: the cluster holds what it wrote, every key in a partition's slot or
    the global one."""
    yield
    assert cluster_keys(cluster), "nothing was written to the cluster"
    assert stray_keys(cluster, 6) == []


__all__ = [
    "test_an_accepted_event_reaches_a_matching_subscription_signed",
    "test_an_incident_is_delivered_in_order_while_others_are_not_held_up",
    "test_binary_mode_sends_ce_headers_and_the_custom_headers",
    "test_duplicate_event_is_not_applied_twice",
    "test_exhausted_retries_make_a_dead_letter_that_can_be_redriven",
    "test_failures_are_retried_with_the_same_webhook_id_and_logged",
    "test_retry_after_is_waited_out_in_full",
]

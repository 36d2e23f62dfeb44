"""What a redis-py error means to the Redis store: the server cannot serve now (a 503), and
whether another attempt, on fresh connections, may succeed (a failover, a moving slot)."""
from __future__ import annotations

from redis.exceptions import (ClusterDownError, ClusterError, InvalidResponse, OutOfMemoryError, ReadOnlyError,
                              RedisClusterException, ResponseError, SlotNotCoveredError, TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: ResponseError prefixes that mean "the server cannot serve now", not "the request is wrong".
#: (NOREPLICAS: ``min-replicas-to-write`` is not met, the master refuses writes.)
_UNAVAILABLE_PREFIXES = ("BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "NOREPLICAS")
#: RedisClusterException messages (not a RedisError) that mean no node or slot can serve now.
_CLUSTER_UNREACHABLE = ("Redis Cluster cannot be connected", "All slots are not covered")


def _cluster_transient(error: BaseException) -> bool:
    """A Redis Cluster error that a later attempt may not meet: the cluster is down or failing
    over, a slot is moving (TRYAGAIN; MOVED/ASK redirections exhausted: ``ClusterError("TTL
    exhausted.")``), a slot is not covered, or no startup node answered. The command did not run.
    (A bare MOVED/ASK never reaches the store from the cluster client, which follows them; from a
    plain client it means a ``redis://`` URL names a cluster node: a configuration error, a 500.)"""
    if isinstance(error, (ClusterError, TryAgainError, SlotNotCoveredError)):
        return True
    return isinstance(error, RedisClusterException) and str(error).startswith(_CLUSTER_UNREACHABLE)


def is_unavailable(error: BaseException) -> bool:
    """Whether a redis-py error means the server cannot be reached or cannot serve now (503)."""
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, ReadOnlyError, ClusterDownError,
                          TryAgainError, OutOfMemoryError, InvalidResponse)) or _cluster_transient(error):
        return True
    return isinstance(error, ResponseError) and str(error).startswith(_UNAVAILABLE_PREFIXES)


def worth_retrying(error: BaseException, cluster: bool) -> bool:
    """Worth another attempt on fresh connections: a connection failure or timeout, a server
    that became a replica (READONLY) or lost its master (MASTERDOWN); on a cluster also a
    failover, a moving slot, or no node reachable yet. The command did not take effect."""
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, ReadOnlyError)):
        return True
    if isinstance(error, ResponseError) and str(error).startswith(("MASTERDOWN", "READONLY", "LOADING")):
        return True
    return cluster and _cluster_transient(error)

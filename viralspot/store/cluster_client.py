"""redis-py's Redis Cluster client, following ASK redirects to a master it has not met.

A slot moving to a new master (``redis-cli --cluster add-node``, then ``reshard``) is answered with
ASK and that master's address while the client's map of nodes, built from ``CLUSTER SLOTS``, does
not name it: a master that serves no slot yet is not listed there. redis-py (8.2) then fails the
command with an ``AttributeError`` (redis/redis-py#4015; its fix, #4214, is not released), so every
new session in a moving slot failed until the move ended. This client adds such a master to its
map's nodes, as redis-py does for a MOVED redirect to a new master (``NodesManager.move_slot``):
the redirect then reaches it, scripts are loaded there with every master's (NOSCRIPT has redis-py
load and run them again), and the map's next refresh from the cluster keeps or drops it (redis-py
closes the connections of the nodes it drops).
"""
from __future__ import annotations

from redis.cluster import PRIMARY, ClusterNode, RedisCluster


class RedirectedRedisCluster(RedisCluster):
    """``RedisCluster`` whose ``get_node(host, port)`` (what an ASK redirect looks up) adds a master
    its map does not name."""

    def get_node(self, host=None, port=None, node_name=None):
        node = super().get_node(host, port, node_name)
        if node is not None or node_name is not None or not host or not port:
            return node
        met = ClusterNode(host, port, PRIMARY)  # named as the map names its nodes (localhost resolved)
        manager = self.nodes_manager
        with manager._lock:  # the lock move_slot holds to add a node
            return manager.nodes_cache.setdefault(met.name, met)

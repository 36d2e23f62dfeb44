"""redis-py's Redis Cluster client, following ASK redirects to a master it has not met.

A slot moving to a new master (``redis-cli --cluster add-node``, then ``reshard``) is answered with
ASK and that master's address while the client's map of nodes, built from ``CLUSTER SLOTS``, does
not name it: a master that serves no slot yet is not listed there. redis-py (8.2) then fails the
command with an ``AttributeError`` (redis/redis-py#4015; its fix, #4214, is not released), so every
new session in a moving slot failed until the move ended. This client answers a lookup of such an
address with a node of its own, kept apart from the map (which stays what the cluster says) and
reused by later redirects there until the map names that master; scripts are loaded there too.
"""
from __future__ import annotations

import threading

from redis.cluster import PRIMARY, ClusterNode, RedisCluster, get_node_name


class RedirectedRedisCluster(RedisCluster):
    """``RedisCluster`` whose ``get_node(host, port)`` (what an ASK redirect looks up) answers a
    node for an address its map does not hold."""

    def __init__(self, *args, **kwargs) -> None:
        self._unlisted: dict[str, ClusterNode] = {}
        self._unlisted_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_node(self, host=None, port=None, node_name=None):
        node = super().get_node(host, port, node_name)
        if node_name is not None or not host or not port:
            return node
        name = get_node_name(host, port)
        with self._unlisted_lock:
            if node is None:
                node = self._unlisted.get(name)
                if node is None:
                    node = self._unlisted[name] = ClusterNode(host, port, PRIMARY)
                return node
            retired = self._unlisted.pop(name, None)  # listed now: redirects go to the map's node
        if retired is not None and retired.redis_connection is not None:
            # Its idle connections close; one a thread holds goes back to this pool, which is dropped.
            retired.redis_connection.connection_pool.disconnect(inuse_connections=False)
        return node

    def unlisted_nodes(self) -> list[ClusterNode]:
        """The masters met by redirects that the map does not name (yet)."""
        with self._unlisted_lock:
            return list(self._unlisted.values())

    def script_load(self, script):
        """Load ``script`` into every master of the map (redis-py), and into the masters met by
        redirects: a script run there after a redirect finds it (NOSCRIPT has redis-py load it
        and run it again)."""
        sha = super().script_load(script)
        for node in self.unlisted_nodes():
            self.get_redis_connection(node).script_load(script)
        return sha

    def close(self) -> None:
        super().close()
        with self._unlisted_lock:
            nodes, self._unlisted = list(self._unlisted.values()), {}
        for node in nodes:
            if node.redis_connection is not None:
                node.redis_connection.close()

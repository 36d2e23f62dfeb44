"""pytest plugin: a real redis-server for the session store tests, and the ``store_backend`` fixture.

``redis_server`` starts one ``redis-server`` per test session on a free 127.0.0.1 port (no
persistence, a temporary directory, a unix socket beside it) and stops it by pid at the end;
``redis_clean`` gives a test that server emptied (FLUSHALL). ``redis_server_factory`` starts
extra servers a test may stop and restart (outage tests). Without ``redis-server`` the Redis
variants skip with the reason, except under CI (env CI set), where that is a failure.

``redis_cluster`` starts a Redis Cluster once per test session: three masters (``redis-server
--cluster-enabled yes``) on free loopback ports, joined by ``redis-cli --cluster create``;
``redis_cluster_clean`` empties it for a test. Without ``redis-cli`` it skips (fails under CI).
``redis_cluster_factory`` starts dedicated clusters for one test (extra server options such as a
``maxmemory``, replicas added with ``RedisClusterServers.add_replica``), on ``ClusterNode`` ports
whose cluster bus port (port + 10000) is free and valid.

``store_backend`` runs a test once per session store backend (memory, redis, redis-cluster);
``make_store`` builds a fresh backend of the current kind. The terminal summary says which
backends ran. Registered by ``pytest_plugins`` in conftest.py.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from backends_tested import summary_line

STORE_BACKENDS = ("memory", "redis", "redis-cluster")
#: store backends that at least one test actually ran against (not skipped)
_store_backends_run: set[str] = set()
_store_notes: dict[str, str] = {}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def redis_server_binary() -> str | None:
    """``VIRALSPOT_REDIS_SERVER`` when set (only it), else ``redis-server`` on PATH or in /usr/bin."""
    if os.environ.get("VIRALSPOT_REDIS_SERVER"):
        candidates = [os.environ["VIRALSPOT_REDIS_SERVER"]]
    else:
        candidates = [shutil.which("redis-server"), "/usr/bin/redis-server"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def redis_cli_binary() -> str | None:
    """``VIRALSPOT_REDIS_CLI`` when set (only it), else ``redis-cli`` on PATH or in /usr/bin."""
    if os.environ.get("VIRALSPOT_REDIS_CLI"):
        candidates = [os.environ["VIRALSPOT_REDIS_CLI"]]
    else:
        candidates = [shutil.which("redis-cli"), "/usr/bin/redis-cli"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen | None) -> None:
    """End a server process started by a test: SIGTERM, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 (and a unix socket); ``start``/``stop`` by pid."""

    def __init__(self, binary: str, *extra: str) -> None:
        self.binary = binary
        self.extra = extra
        self.directory = tempfile.mkdtemp(prefix="vs-redis-")
        self.port = self._free_port()
        self.unix_path = os.path.join(self.directory, "redis.sock")
        self.process: subprocess.Popen | None = None

    @staticmethod
    def _free_port() -> int:
        return free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        for attempt in range(3):
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self.directory, "--unixsocket", self.unix_path, "--unixsocketperm", "700",
                 "--daemonize", "no", "--logfile", os.path.join(self.directory, "redis.log"), *self.extra],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return
            self.stop()
            if attempt < 2:  # the port was taken meanwhile: try another
                self.port = self._free_port()
        raise RuntimeError(f"redis-server did not answer PING; see {self.directory}/redis.log")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL)."""
        process, self.process = self.process, None
        stop_process(process)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free 127.0.0.1 port for a cluster node whose bus port (port + 10000) is free too: both
    below the kernel's ephemeral range (32768 and up on Linux), so no client socket takes either,
    and the bus port a valid one (a node on a port over 55535 cannot start)."""
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(20000, 22768)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair (p, p + 10000) in 20000-32767")


class ClusterNode(RedisServer):
    """A redis-server for a cluster, on a ``free_cluster_port``."""

    @staticmethod
    def _free_port() -> int:
        return free_cluster_port()


def _require_redis_server(backend: str = "redis") -> str:
    binary = redis_server_binary()
    if binary is None:
        reason = ("redis-server not found (VIRALSPOT_REDIS_SERVER, PATH, /usr/bin); "
                  "install it with: apt-get install redis-server")
        _store_notes[backend] = reason
        if _in_ci():
            pytest.fail(f"{reason}; CI is set, so the Redis session store tests must run", pytrace=False)
        pytest.skip(reason)
    try:
        import redis  # noqa: F401
    except ImportError:
        reason = "the redis package (redis[hiredis]) is not installed"
        _store_notes[backend] = reason
        if _in_ci():
            pytest.fail(f"{reason}; CI is set, so the Redis session store tests must run", pytrace=False)
        pytest.skip(reason)
    return binary


def _require_redis_cli() -> str:
    binary = redis_cli_binary()
    if binary is None:
        reason = ("redis-cli not found (VIRALSPOT_REDIS_CLI, PATH, /usr/bin), needed to create a Redis "
                  "Cluster; install it with: apt-get install redis-tools")
        _store_notes["redis-cluster"] = reason
        if _in_ci():
            pytest.fail(f"{reason}; CI is set, so the Redis Cluster tests must run", pytrace=False)
        pytest.skip(reason)
    return binary


class RedisClusterServers:
    """A throwaway Redis Cluster on 127.0.0.1: ``masters`` redis-servers with cluster mode on (each
    in its own directory, ``nodes.conf`` there), joined by ``redis-cli --cluster create`` with no
    replicas. ``start`` waits (bounded) until every node reports ``cluster_state:ok``. ``extra``
    options go to every node (``redis_cluster_factory``: a ``maxmemory``, ...); ``add_replica``
    joins a replica to a master afterwards."""

    def __init__(self, server_binary: str, cli_binary: str, masters: int = 3, extra: tuple[str, ...] = (),
                 node_class: type[RedisServer] = RedisServer) -> None:
        self.cli = cli_binary
        self.server_binary = server_binary
        self.node_class = node_class
        self.node_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "5000", *extra)
        self.nodes = [node_class(server_binary, *self.node_args) for _ in range(masters)]
        #: nodes added by ``add_replica`` and ``add_master`` (``nodes`` stay the masters the cluster
        #: was created with)
        self.replicas: list[RedisServer] = []
        self.added_masters: list[RedisServer] = []

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def url(self, count: int | None = None) -> str:
        """``redis+cluster://`` naming the first ``count`` nodes (all by default) as startup nodes."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:count])

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        result = subprocess.run(
            [self.cli, "--cluster", "create", *[f"127.0.0.1:{port}" for port in self.ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout}{result.stderr}")
        deadline = time.monotonic() + timeout
        pending = list(self.nodes)
        while pending:
            with pending[0].client() as client:
                if client.execute_command("CLUSTER INFO").get("cluster_state") == "ok":
                    pending.pop(0)
                    continue
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster on {self.ports} not ok after {timeout} s")
            time.sleep(0.05)

    def clients(self):
        """A plain client per node (a test closes them)."""
        return [node.client() for node in self.nodes]

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.flushall()

    def slot_owners(self, node: RedisServer | None = None) -> dict[int, int]:
        """Slot -> port of the master serving it, as ``node`` (the first by default) sees it
        (``CLUSTER SLOTS``)."""
        with (node or self.nodes[0]).client() as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        owners = {}
        for first, last, primary, *_replicas in ranges:
            for slot in range(int(first), int(last) + 1):
                owners[slot] = int(primary[1])
        return owners

    def node_on(self, port: int) -> RedisServer:
        return next(node for node in self.nodes + self.replicas + self.added_masters if node.port == port)

    def add_master(self, timeout: float = 30.0) -> RedisServer:
        """A new master with no slots joined to the cluster (as ``redis-cli --cluster add-node``
        does); returns once every node lists it as a connected master, it knows every node and
        reports ``cluster_state:ok`` (bounded). ``CLUSTER SLOTS`` does not name it until it serves a slot."""
        node = self.node_class(self.server_binary, *self.node_args)
        self.added_masters.append(node)
        node.start()
        deadline = time.monotonic() + timeout
        with node.client() as client:
            node_id = client.execute_command("CLUSTER MYID").decode()
            client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)

            def joined() -> bool:
                for other in self.nodes + [node]:
                    with other.client() as peer:
                        known = _cluster_nodes(peer)
                    line = known.get(node_id)
                    if (line is None or "master" not in line["flags"].split(",") or len(known) < len(self.nodes) + 1
                            or not all(entry["connected"] and "handshake" not in entry["flags"].split(",")
                                       for entry in known.values())):
                        return False
                return True

            def ready() -> bool:  # a new node answers CLUSTERDOWN until it has learnt every slot's master
                return client.execute_command("CLUSTER INFO").get("cluster_state") == "ok" and joined()

            while not ready():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"master {node.port}: not joined to {self.ports} within {timeout} s")
                time.sleep(0.02)
        return node

    def add_replica(self, master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """A new node joined to the cluster as a replica of ``master``; returns once every node of
        the cluster lists it as that master's replica, it knows every node, and it is in sync with
        the master (bounded)."""
        replica = self.node_class(self.server_binary, *self.node_args)
        self.replicas.append(replica)
        replica.start()
        deadline = time.monotonic() + timeout

        def wait(predicate, what: str) -> None:
            while not predicate():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {replica.port} of {master.port}: {what} not within {timeout} s")
                time.sleep(0.02)

        with master.client() as primary, replica.client() as client:
            master_id = primary.execute_command("CLUSTER MYID").decode()
            replica_id = client.execute_command("CLUSTER MYID").decode()
            client.execute_command("CLUSTER MEET", "127.0.0.1", master.port)
            wait(lambda: master_id in _cluster_nodes(client), "knowing the master")
            client.execute_command("CLUSTER REPLICATE", master_id)

            def listed_everywhere() -> bool:
                for node in self.nodes + [replica]:
                    with node.client() as other:
                        line = _cluster_nodes(other).get(replica_id)
                    if line is None or "slave" not in line["flags"].split(",") or line["master_id"] != master_id:
                        return False
                return True

            wait(listed_everywhere, "listed as the master's replica by every node")
            others = set(_cluster_nodes(primary)) - {replica_id}  # every node of the cluster but this one

            def knows_every_node() -> bool:
                # The others list the replica before it knows them: it learns them from its master's
                # gossip. A failover it starts before then asks no master for its vote and never
                # completes (seen: CLUSTER FAILOVER FORCE timing out, votes asked of the master only).
                known = _cluster_nodes(client)
                return all(node_id in known and known[node_id]["connected"]
                           and "handshake" not in known[node_id]["flags"].split(",") for node_id in others)

            wait(knows_every_node, "knowing every node of the cluster")

            def synced() -> bool:
                ours, theirs = primary.info("replication"), client.info("replication")
                return (ours.get("slave0", {}).get("state") == "online" and theirs.get("master_link_status") == "up"
                        and theirs["slave_repl_offset"] == ours["master_repl_offset"])

            wait(synced, "in sync")
        return replica

    def remove(self) -> None:
        for node in self.nodes + self.replicas + self.added_masters:
            node.remove()


def _cluster_nodes(client) -> dict[str, dict]:
    """``CLUSTER NODES`` (as redis-py parses it) by node id: each node's ``flags``, ``master_id``, ..."""
    return {node["node_id"]: node for node in client.execute_command("CLUSTER NODES").values()}


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server for the test session; skips (fails under CI) when not installed."""
    server = RedisServer(_require_redis_server())
    server.start()
    yield server
    server.remove()


@pytest.fixture
def redis_clean(redis_server):
    """The session's redis-server, emptied for this test."""
    with redis_server.client() as client:
        client.flushall()
    _store_backends_run.add("redis")
    yield redis_server


@pytest.fixture(scope="session")
def redis_cluster():
    """One real 3-master Redis Cluster for the test session (started on first use, by the cluster
    contract variants or tests/test_redis_cluster.py); skips (fails under CI) when redis-server or
    redis-cli is missing."""
    cluster = RedisClusterServers(_require_redis_server("redis-cluster"), _require_redis_cli(), node_class=ClusterNode)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def redis_cluster_clean(redis_cluster):
    """The session's Redis Cluster, every node emptied for this test."""
    redis_cluster.flush()
    _store_backends_run.add("redis-cluster")
    yield redis_cluster


def _servers_for_one_test(make, backend: str):
    """A factory fixture's body: yields ``start(...)``, which makes a server (or cluster) with
    ``make(...)``, starts it and counts ``backend`` as run; removes every one it started after."""
    started = []

    def start(*args, **kwargs):
        server = make(*args, **kwargs)
        started.append(server)
        server.start()
        _store_backends_run.add(backend)
        return server

    yield start
    for server in started:
        server.remove()


@pytest.fixture
def redis_cluster_factory():
    """Starts dedicated Redis Clusters for one test: ``start(masters=3, extra=())`` (``extra``: more
    redis-server options for every node); removes them (and replicas added to them) after."""
    server_binary, cli_binary = _require_redis_server("redis-cluster"), _require_redis_cli()

    def cluster(masters: int = 3, extra: tuple[str, ...] = ()) -> RedisClusterServers:
        return RedisClusterServers(server_binary, cli_binary, masters, extra, node_class=ClusterNode)

    yield from _servers_for_one_test(cluster, "redis-cluster")


@pytest.fixture
def redis_server_factory():
    """Starts extra redis-servers for one test: ``start(*extra)`` (more redis-server options; the test
    may stop and restart them); removes them after."""
    binary = _require_redis_server()
    yield from _servers_for_one_test(lambda *extra: RedisServer(binary, *extra), "redis")


def in_forked_child(work) -> tuple[int, bytes]:
    """Run ``work()`` in a forked child; its exit code and the bytes it answered.

    ``work`` returns (ok, answer): the child writes ``answer`` to a pipe and exits 0 when ``ok``,
    2 when not, 1 when ``work`` raised. The child leaves through ``os._exit`` only (no pytest
    machinery runs twice).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            ok, answer = work()
            os.write(write_end, answer)
            status = 0 if ok else 2
        finally:
            os._exit(status)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read_end, 64)
    os.close(read_end)
    return os.waitstatus_to_exitcode(status), answer


class ManualClock:
    """A clock the test advances by hand (memory backend)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class StoreFactory:
    """Builds backends of one kind for a test and closes them after it."""

    def __init__(self, kind: str, request) -> None:
        self.kind = kind
        self.clock = ManualClock() if kind == "memory" else None
        self._request = request
        self._stores = []

    def __call__(self, ttl: float = 3600, max_feeds: int = 64, **options):
        if self.kind == "memory":
            from viralspot.store.memory import MemorySessionStore

            store = MemorySessionStore(ttl=ttl, max_feeds=max_feeds, clock=self.clock, **options)
        elif self.kind == "redis-cluster":
            from viralspot.store.redis_store import RedisSessionStore

            cluster = self._request.getfixturevalue("redis_cluster_clean")
            store = RedisSessionStore(cluster.url(), ttl=ttl, max_feeds=max_feeds, **options)
        else:
            from viralspot.store.redis_store import RedisSessionStore

            server = self._request.getfixturevalue("redis_clean")
            store = RedisSessionStore(server.url, ttl=ttl, max_feeds=max_feeds, **options)
        self._stores.append(store)
        return store

    def advance(self, seconds: float) -> None:
        """Move the memory backend's clock on (Redis keeps real time for what it stores)."""
        if self.clock is not None:
            self.clock.now += seconds

    def now(self) -> float:
        """The backend's notion of now (epoch seconds)."""
        return self.clock.now if self.clock is not None else time.time()

    def close(self) -> None:
        for store in self._stores:
            store.close()


@pytest.fixture(params=[pytest.param("memory"), pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("redis-cluster", marks=pytest.mark.redis)])
def store_backend(request) -> str:
    """The session store backend name; tests using it (or ``make_store``) run once per backend."""
    if request.param == "redis":
        request.getfixturevalue("redis_clean")
    elif request.param == "redis-cluster":
        request.getfixturevalue("redis_cluster_clean")
    _store_backends_run.add(request.param)
    return request.param


@pytest.fixture
def make_store(store_backend, request):
    """``make_store(ttl=..., max_feeds=...)``: a fresh backend of the current kind."""
    factory = StoreFactory(store_backend, request)
    yield factory
    factory.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "redis: runs against a real redis-server")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(summary_line("session store", STORE_BACKENDS, _store_backends_run, _store_notes,
                                             "session store"))

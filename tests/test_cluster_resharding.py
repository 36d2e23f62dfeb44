"""Random feeds while Redis Cluster moves a slot (resharding), on real ``redis-server
--cluster-enabled`` processes: a slot MIGRATING on its master and IMPORTING on another, its keys
moved by ``MIGRATE``, then the slot handed over (``CLUSTER SETSLOT ... NODE``), as ``redis-cli
--cluster reshard`` does it.

* **To a new master.** A master joined after the app's client mapped the cluster (``add-node``)
  serves no slot, so ``CLUSTER SLOTS`` does not name it. While a slot moves to it, a new session
  of the slot (ASK to that master), a reset of a session still on the old master, the first page
  after a reset and the next page of a session on the old master all answer 200; no session is
  lost or shown an item twice, before and after the keys move.
* **A redirect that fails.** When the master a slot moves to is down, a new session of the slot
  gets 503 ``SESSION_STORE_UNAVAILABLE``, and nothing else fails: no connection of the old master
  is handed to two requests at once, and pages of other sessions running beside the failing ones
  each get their own answer. (redis-py 8.1 failed such a redirect with an ``AttributeError``, a
  500, and released the old master's connection twice: other sessions' pages then got each
  other's answers.)
"""
from __future__ import annotations

import itertools
import threading

import pytest
from redis.crc import key_slot

from session_helpers import random_get
from test_failover import make_app, seeded_catalog_url  # noqa: F401
from viralspot.store.redis_store import session_key

pytestmark = pytest.mark.redis

CATALOG_ITEMS = 1500


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory):
    """A SQLite catalog of 1,500 seeded items shared by the module's apps."""
    return seeded_catalog_url(tmp_path_factory.mktemp("cluster-resharding"), CATALOG_ITEMS)


def slot_of(session_id: str) -> int:
    return key_slot(session_key(session_id).encode())


def ids_in(slots: set[int], count: int, prefix: str) -> list[str]:
    """``count`` session ids whose hashes fall in ``slots``."""
    found = []
    for number in itertools.count():
        session_id = f"{prefix}-{number}"
        if slot_of(session_id) in slots:
            found.append(session_id)
            if len(found) == count:
                return found


def node_id(node) -> str:
    with node.client() as client:
        return client.execute_command("CLUSTER MYID").decode()


def keys_in_slot(node, slot: int) -> int:
    with node.client() as client:
        return int(client.execute_command("CLUSTER COUNTKEYSINSLOT", slot))


def fields(node, session_id: str, asking: bool = False) -> set[str]:
    """The field names of a session's hash on ``node`` (``asking``: in a slot it is importing)."""
    with node.client() as client:
        pipe = client.pipeline(transaction=False)  # one connection: ASKING holds for the next command
        if asking:
            pipe.execute_command("ASKING")
        pipe.hkeys(session_key(session_id))
        return {name.decode() for name in pipe.execute()[-1]}


def start_moving(slot: int, source, target) -> None:
    """The slot IMPORTING on ``target`` and MIGRATING on ``source`` (the first step of a reshard)."""
    with target.client() as client:
        client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", node_id(source))
    with source.client() as client:
        client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", node_id(target))


def finish_moving(cluster, slot: int, source, target) -> None:
    """The slot's keys moved by ``MIGRATE`` and the slot handed to ``target`` on every master."""
    with source.client() as client:
        keys = client.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        if keys:
            client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    owner = node_id(target)
    for node in [target, source, *(node for node in cluster.nodes if node not in (source, target))]:
        with node.client() as client:
            if client.execute_command("ROLE")[0] == b"master":  # a master left with no slot turns replica
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", owner)


class Sessions:
    """What each session was shown, by its order (``X-Session-Order``): a page must show items its
    order has not shown."""

    def __init__(self, client) -> None:
        self.client = client
        self.shown: dict[str, set[str]] = {}
        self.order: dict[str, str] = {}
        self.offset: dict[str, int] = {}

    def page(self, session_id: str) -> str:
        """One page of 24 from the session's next offset (0 for a new order); answers its order."""
        response = random_get(self.client, session_id, self.offset.get(session_id, 0))
        assert response.status_code == 200, (session_id, response.status_code, response.get_json())
        order = response.headers["X-Session-Order"]
        if order != self.order.get(session_id):  # a new session: paged from 0
            assert self.offset.get(session_id, 0) == 0, (session_id, "lost at", self.offset[session_id])
            self.order[session_id], self.shown[order] = order, set()
        ids = [item["id"] for item in response.get_json()["data"]["reels"]]
        assert len(ids) == 24
        assert not self.shown[order] & set(ids), (session_id, "repeated", self.shown[order] & set(ids))
        self.shown[order].update(ids)
        self.offset[session_id] = self.offset.get(session_id, 0) + 24
        return order

    def reset(self, session_id: str) -> dict:
        response = self.client.post(f"/api/reset-session?session_id={session_id}")
        assert response.status_code == 200, (session_id, response.get_json())
        self.offset[session_id] = 0
        return response.get_json()["data"]["session_reset"]


def test_a_slot_moving_to_a_new_master_serves_pages_and_resets_throughout(make_app, redis_cluster_factory):
    cluster = redis_cluster_factory()
    app = make_app(cluster.url())
    sessions = Sessions(app.test_client())
    source = cluster.nodes[0]
    slot = min(slot for slot, port in cluster.slot_owners().items() if port == source.port)
    moving, reset_while_moving, reset_before, new = ids_in({slot}, 4, "move")
    for session_id in (moving, reset_while_moving, reset_before):
        sessions.page(session_id)  # the app's client maps the cluster: three masters
    assert sessions.reset(reset_before)["session_found"] is True  # its hash holds the reset's record
    target = cluster.add_master()
    start_moving(slot, source, target)

    # A new session: its hash is not on the old master, which answers ASK to the new one.
    first = sessions.page(new)
    assert keys_in_slot(target, slot) == 1
    # A reset of a session the old master holds, the first page after a reset whose record it
    # holds, the next page of a session it holds: all there.
    cleared_order = sessions.order[reset_while_moving]
    cleared = sessions.reset(reset_while_moving)
    assert (cleared["session_found"], cleared["cleared_items_count"]) == (True, 24)
    assert fields(source, reset_while_moving) == {"r"}  # the session gone whole, its reset's record left
    recorded_order = sessions.order[reset_before]
    assert sessions.page(reset_before) != recorded_order
    # A session of one page, as the new one is, and the record it replaced kept: nothing else.
    assert fields(source, reset_before) == fields(target, new, asking=True) | {"r"}
    assert sessions.page(moving) == sessions.order[moving]
    assert sessions.page(reset_while_moving) != cleared_order
    assert keys_in_slot(source, slot) == 3

    finish_moving(cluster, slot, source, target)
    assert (keys_in_slot(source, slot), keys_in_slot(target, slot)) == (0, 4)
    orders = dict(sessions.order)
    for session_id in (moving, reset_while_moving, reset_before, new):
        assert sessions.page(session_id) == orders[session_id]  # no session lost in the move
    assert sessions.order[new] == first
    # A reset after the move: the new master holds the session whole (three pages).
    cleared = sessions.reset(moving)
    assert (cleared["session_found"], cleared["cleared_items_count"]) == (True, 72)
    store_client = app.extensions["viralspot.session_store"].client
    assert f"127.0.0.1:{target.port}" in {node.name for node in store_client.get_nodes()}

    # The slot moves back and the new master leaves: the client's map lets it go (once it has
    # tried it), and pages go on, also when every script must be loaded again.
    start_moving(slot, target, source)
    finish_moving(cluster, slot, target, source)
    gone = node_id(target)
    target.stop()
    for node in cluster.nodes:
        with node.client() as client:
            client.execute_command("CLUSTER FORGET", gone)
            client.execute_command("SCRIPT FLUSH")
    for session_id in (moving, reset_while_moving, reset_before, new):
        assert sessions.page(session_id) == sessions.order[session_id]
    assert f"127.0.0.1:{target.port}" not in {node.name for node in store_client.get_nodes()}


def test_a_redirect_to_a_master_that_is_down_fails_that_page_alone(make_app, redis_cluster_factory):
    cluster = redis_cluster_factory()
    app = make_app(cluster.url())
    source = cluster.nodes[0]
    owned = sorted(slot for slot, port in cluster.slot_owners().items() if port == source.port)
    slot = owned[0]
    paging = ids_in(set(owned[1:]), 8, "stay")  # sessions of the old master's other slots
    sessions = Sessions(app.test_client())
    for session_id in paging:
        sessions.page(session_id)
    target = cluster.add_master()
    start_moving(slot, source, target)
    target.stop()

    client = app.test_client()
    for session_id in ids_in({slot}, 10, "down"):
        response = random_get(client, session_id)
        body = response.get_json()
        assert response.status_code == 503, body
        assert (body["success"], body["error_code"]) == (False, "SESSION_STORE_UNAVAILABLE")
        assert response.headers["Retry-After"] == "2"

    # Each connection of the old master's pool is free once, so no two requests share one.
    store_client = app.extensions["viralspot.session_store"].client
    for node in store_client.get_nodes():
        if node.redis_connection is not None:
            free = node.redis_connection.connection_pool._available_connections
            assert len({id(connection) for connection in free}) == len(free), node.name
    # Pages of the other sessions, eight at once with the failing ones, each get their own answer.
    errors: list[BaseException] = []

    def page_on(session_id: str) -> None:
        own = Sessions(app.test_client())
        own.order[session_id], own.offset[session_id] = sessions.order[session_id], sessions.offset[session_id]
        own.shown = sessions.shown
        try:
            for _ in range(6):
                assert own.page(session_id) == sessions.order[session_id]
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    def fail_on() -> None:
        failing = app.test_client()
        for session_id in ids_in({slot}, 30, "down-again"):
            if random_get(failing, session_id).status_code != 503:
                errors.append(AssertionError(f"{session_id}: not a 503"))

    threads = [threading.Thread(target=page_on, args=(session_id,)) for session_id in paging]
    threads.append(threading.Thread(target=fail_on))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[:3]

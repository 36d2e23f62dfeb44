"""Damaged sessions: a session's hash whose fields are there but malformed, or a key of another type.

test_redis_store.py ("Partial sessions") takes fields away; here they are present and wrong: a seed,
bounds, registry or feed state of an impossible length, bounds descending, an ``n`` or ``c`` that
is no count, a registry cut by whole ids, a feed's served count not its index's, a container of an
impossible kind or size (or missing where the feed's index names it, or there where it does not
yet), positions not ascending below the feed's cursor, a ``w.`` container of an impossible kind, an
unknown field, a malformed reset record, a string, list, set or sorted set at the key; then random
damage (Hypothesis). Against a real redis-server (and a Redis Cluster for a slot moving), through
the store API, and for a few cases through the HTTP API and ``flask sessions``. What holds:

* no script error ever escapes (through HTTP: no 500; every error the JSON envelope);
* a damaged session is gone: reads answer ABSENT, ``summary`` None, a creating page replaces the
  hash whole (nothing of it kept) and no item is served from it. What every script reads (the meta
  fields, the lengths of the feeds' states) makes it gone at once; a feed's state and a container
  are checked by the page that reads them, which finds the damage and forgets the session;
* a reset answers (``found`` only for a session that was whole) and leaves only its record;
* what is harmless, or cannot be told from a session a caller may make (an unknown field, a
  malformed reset record, a wrong decimal count, bounds of no epoch or below a cursor), serves on.
"""
from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_failover import make_app, seeded_catalog_url  # noqa: F401 (make_app: a fixture)
from test_redis_store import client, store  # noqa: F401 (fixtures)
from viralspot.store.base import FeedView, PageResult, PageStatus
from viralspot.store.redis_store import RedisSessionStore, session_key

pytestmark = pytest.mark.redis

SEED = b"\x01" * 8
OTHER_SEED = b"\x02" * 8
REELS = b"r" + bytes(range(8))
POSTS = b"p" + bytes(range(8))
DENSE = b"p" + bytes(range(1, 9))
WEIGHTED = b"R" + bytes(range(2, 10))
BOUNDS = (10**6,)
BLOCK = 65_536
KEY = session_key("s")

#: The served session every test damages: what each feed holds, and the hash's fields.
SERVED = {REELS: [100, 2000, 30000], POSTS: [4, BLOCK + 1], DENSE: [3 * BLOCK + low for low in range(200)],
          WEIGHTED: [10, 11]}
#: The weighted feed's tickets' canonical positions (what is seen session-wide, ``w.0``).
CANONICAL = [7, 8]
#: Pages that claim in block 0 past the feed's cursor (positions, canonical positions): they read
#: the other feeds' containers of block 0 and ``w.0``.
CLAIMS = {REELS: ([40000, 40001], None), WEIGHTED: ([20, 21], [40000, 40001])}
FIELDS = {b"s", b"b", b"k", b"n", b"c", b"f1", b"f2", b"f3", b"f4", b"1.0", b"2.0", b"2.1", b"3.3", b"4.0", b"w.0"}
#: The fields a creating page leaves (``fresh_page``).
FRESH_FIELDS = {b"s", b"b", b"k", b"n", b"c", b"f1", b"1.0"}


def read(store, feed, seed=SEED) -> PageResult:
    return store.serve_page("s", feed, FeedView(seed, BOUNDS), offset=0, limit=10**6, max_ahead=10**6)


def claim(store, feed, positions, canonical=None, view=None, create=False) -> PageResult:
    """A page of ``feed`` taking ``positions`` (ascending, from the feed's cursor on)."""
    view = view or FeedView(SEED, BOUNDS)
    return store.serve_page("s", feed, view, offset=view.served, limit=len(positions), max_ahead=10**6,
                            candidates=positions, scanned_to=positions[-1] + 1, create=create, canonical=canonical)


def served_session(store, client) -> None:
    """Session "s": four feeds, an array container (``1.0``), two blocks of one feed (``2.0``, ``2.1``),
    a bitmap (``3.3``), a weighted feed (``4.0``, its canonical positions in ``w.0``)."""
    client.delete(KEY)
    assert claim(store, REELS, SERVED[REELS], create=True).status is PageStatus.SERVED
    for feed in (POSTS, DENSE, WEIGHTED):
        result = claim(store, feed, SERVED[feed], CANONICAL if feed == WEIGHTED else None)
        assert result.status is PageStatus.SERVED and result.positions == SERVED[feed], result
    assert set(client.hkeys(KEY)) == FIELDS
    assert client.hget(KEY, "3.3")[:1] == b"b" and client.hget(KEY, "1.0")[:1] == b"a"
    assert client.hget(KEY, "w.0")[:1] == b"u"


def fresh_page(store) -> PageResult:
    """A creating page of a new session (another seed) of the reels feed."""
    return claim(store, REELS, [1, 2, 3, 4, 5], view=FeedView(OTHER_SEED, BOUNDS), create=True)


def assert_gone(store, client, *, kept=frozenset()) -> None:
    """The session is gone: every read ABSENT, no summary; then a creating page replaces the hash
    whole, keeping only ``kept`` of the old fields (a reset's record)."""
    for feed in SERVED:
        assert read(store, feed) == PageResult(PageStatus.ABSENT, FeedView(b"", ())), feed
        assert claim(store, feed, [500, 501], view=FeedView(SEED, BOUNDS, 500, len(SERVED[feed])),
                     canonical=[500, 501] if feed == WEIGHTED else None).status is PageStatus.ABSENT
    assert store.summary("s") is None
    fresh = fresh_page(store)
    assert fresh == PageResult(PageStatus.SERVED, FeedView(OTHER_SEED, BOUNDS, 6, 5), [1, 2, 3, 4, 5], False)
    assert set(client.hkeys(KEY)) == FRESH_FIELDS | set(kept)
    assert client.hget(KEY, "k") == REELS and client.hget(KEY, "n") == b"5" and client.hget(KEY, "s") == OTHER_SEED
    summary = store.summary("s")
    assert summary.served_items_count == 5 and list(summary.feeds) == [REELS]
    assert read(store, REELS, OTHER_SEED).positions == [1, 2, 3, 4, 5]
    assert read(store, POSTS, OTHER_SEED).positions == []


def assert_reset_leaves_its_record(store, client, found: bool, cleared: int = 0) -> None:
    result = store.reset("s")
    assert (result.found, result.cleared_items_count, result.total_active_sessions) == (found, cleared, 0)
    record = client.hgetall(KEY)
    assert list(record) == [b"r"] and record[b"r"].endswith(b":%d:%d" % (cleared, found))
    assert client.type(KEY) == b"hash" and 0 < client.pttl(KEY) <= 60_000
    assert store.session_count() == 0 and store.session_ids() == []
    assert read(store, REELS).status is PageStatus.ABSENT and store.summary("s") is None


def state(client, number: int) -> bytes:
    return client.hget(KEY, f"f{number}")


def with_served(value: bytes, served: int) -> bytes:
    return value[:4] + struct.pack("<I", served) + value[8:]


def array(*lows: int) -> bytes:
    return b"a" + b"".join(struct.pack("<H", low) for low in lows)


# --- Damage every page finds: the session is gone at once -----------------------------------------

#: name -> (field, the damaged value computed from the hash's client)
AT_ONCE = {
    "seed of 7 bytes": ("s", lambda c: SEED[:7]),
    "seed of 9 bytes": ("s", lambda c: SEED + b"\x01"),
    "empty seed": ("s", lambda c: b""),
    "bounds of 5 bytes": ("b", lambda c: struct.pack("<I", BOUNDS[0]) + b"\x00"),
    "bounds of 3 bytes": ("b", lambda c: struct.pack("<I", BOUNDS[0])[:3]),
    "bounds descending": ("b", lambda c: struct.pack("<II", BOUNDS[0], 5)),
    "registry of 37 bytes": ("k", lambda c: c.hget(KEY, "k") + b"\x00"),
    "registry a feed short": ("k", lambda c: c.hget(KEY, "k")[:-9]),
    "registry two feeds short": ("k", lambda c: c.hget(KEY, "k")[:-18]),
    "a state for the feed after the last": ("f5", lambda c: state(c, 1)),
    "n not a number": ("n", lambda c: b"x"),
    "n empty": ("n", lambda c: b""),
    "n negative": ("n", lambda c: b"-207"),
    "n fractional": ("n", lambda c: b"207.0"),
    "n in exponent form": ("n", lambda c: b"2.07e2"),
    "n hexadecimal": ("n", lambda c: b"0xcf"),
    "n with a space": ("n", lambda c: b" 207"),
    "n nan": ("n", lambda c: b"nan"),
    "n inf": ("n", lambda c: b"inf"),
    "n of 400 digits": ("n", lambda c: b"9" * 400),
    "c not a number": ("c", lambda c: b"x"),
    "c empty": ("c", lambda c: b""),
    "c of 400 digits": ("c", lambda c: b"9" * 400),
    "feed state of 7 bytes": ("f1", lambda c: state(c, 1)[:7]),
    "feed state with a partial entry": ("f1", lambda c: state(c, 1) + b"\x00\x00\x00"),
    "empty feed state": ("f3", lambda c: b""),
    "weighted feed state cut": ("f4", lambda c: state(c, 4)[:-1]),
}


@pytest.mark.parametrize("name", list(AT_ONCE))
def test_damage_every_page_checks_makes_the_session_gone(store, client, name):
    field, damaged = AT_ONCE[name]
    served_session(store, client)
    client.hset(KEY, field, damaged(client))
    assert store.session_count() == 1 and store.session_ids() == ["s"]  # the index, as for an evicted session
    assert_gone(store, client)


@pytest.mark.parametrize("name", list(AT_ONCE))
def test_a_reset_of_a_damaged_session_leaves_only_its_record(store, client, name):
    field, damaged = AT_ONCE[name]
    served_session(store, client)
    client.hset(KEY, field, damaged(client))
    assert_reset_leaves_its_record(store, client, found=False)


def test_a_whole_session_resets_found_with_its_count(store, client):
    served_session(store, client)
    assert_reset_leaves_its_record(store, client, found=True, cleared=207)


def put_other_type(client, kind: str) -> None:
    client.delete(KEY)
    {"string": lambda: client.set(KEY, "x"), "list": lambda: client.rpush(KEY, "s", "b"),
     "set": lambda: client.sadd(KEY, "s"), "zset": lambda: client.zadd(KEY, {"s": 1})}[kind]()


@pytest.mark.parametrize("kind", ["string", "list", "set", "zset"])
def test_a_key_of_another_type_is_no_session(store, client, kind):
    put_other_type(client, kind)
    assert read(store, REELS).status is PageStatus.ABSENT and store.summary("s") is None
    assert store.session_count() == 0 and store.session_ids() == []
    assert_gone(store, client)
    put_other_type(client, kind)
    assert_reset_leaves_its_record(store, client, found=False)


def test_a_key_of_another_type_in_a_cluster_slot_moving_away(redis_cluster_factory):
    """Redis Cluster, the session's slot MIGRATING to another master: the node cannot write a hash
    where the string was (once deleted, the key is the new node's). A creating page deletes it and
    answers ABSENT, having written nothing; the next creating page goes to the new node and creates
    the session there. A reset deletes it likewise, and does not find a session."""
    from test_cluster_resharding import fields, ids_in, keys_in_slot, start_moving

    cluster = redis_cluster_factory()
    source = cluster.nodes[0]
    slot = min(slot for slot, port in cluster.slot_owners().items() if port == source.port)
    paged, reset = ids_in({slot}, 2, "typed")
    store = RedisSessionStore(cluster.url(), ttl=3600)
    try:
        with source.client() as connection:
            connection.set(session_key(paged), "x")
            connection.rpush(session_key(reset), "x")
        target = cluster.add_master()
        start_moving(slot, source, target)

        def create() -> PageResult:
            return store.serve_page(paged, REELS, FeedView(SEED, BOUNDS), offset=0, limit=2, max_ahead=10,
                                    candidates=[1, 2], scanned_to=3, create=True)

        assert create() == PageResult(PageStatus.ABSENT, FeedView(b"", ()))
        assert keys_in_slot(source, slot) == 1  # the other session's list
        assert create().positions == [1, 2]
        assert fields(target, paged, asking=True) == {name.decode() for name in FRESH_FIELDS}
        result = store.reset(reset)
        assert (result.found, result.cleared_items_count) == (False, 0)
        assert keys_in_slot(source, slot) == 0
    finally:
        store.close()


# --- Damage in a feed's state or a container: found by the first page that reads it ---------------

def _container_cases():
    def replace(field, value):
        return lambda c: c.hset(KEY, field, value(c.hget(KEY, field)) if callable(value) else value)

    # name -> (the damage, the feed whose page finds it, whether a read finds it or only a page
    # that claims, which reads other feeds' containers)
    return {
        "feed state without its index": (replace("f1", lambda v: v[:8]), REELS, "read"),
        "feed state with an extra entry": (replace("f2", lambda v: v + struct.pack("<HI", 2, 3)), POSTS, "read"),
        "feed state served past its index": (replace("f1", lambda v: with_served(v, 4)), REELS, "read"),
        "feed state served short of its index": (replace("f2", lambda v: with_served(v, 1)), POSTS, "read"),
        "array of garbage": (replace("1.0", b"zzzzzzz"), REELS, "read"),
        "empty container": (replace("1.0", b""), REELS, "read"),
        "array cut short": (replace("1.0", lambda v: v[:-2]), REELS, "read"),
        "array of an even length": (replace("1.0", lambda v: v[:-1]), REELS, "read"),
        "array longer than its count": (replace("1.0", lambda v: v + b"\x09\x00"), REELS, "read"),
        "array holding a position past the cursor": (replace("1.0", array(100, 2000, 40000)), REELS, "read"),
        "array not ascending": (replace("1.0", array(2000, 100, 30000)), REELS, "read"),
        "bitmap for an array": (replace("1.0", b"b\x00"), REELS, "read"),
        "a block's container missing": (lambda c: c.hdel(KEY, "2.1"), POSTS, "read"),
        "bitmap of its kind byte only": (replace("3.3", b"b"), DENSE, "read"),
        "bitmap cut short": (replace("3.3", lambda v: v[:10]), DENSE, "read"),
        "bitmap past 8 KiB": (replace("3.3", lambda v: v + b"\x00" * 8200), DENSE, "read"),
        "bitmap too small for its count": (replace("3.3", lambda v: v[:1] + b"\xff" * 20), DENSE, "read"),
        "weighted feed's array of garbage": (replace("4.0", b"\x00\x01\x02"), WEIGHTED, "read"),
        "w. container of garbage": (replace("w.0", b"zzzzz"), REELS, "claim"),
        "w. container of an even length": (replace("w.0", lambda v: v + b"\x00"), REELS, "claim"),
        "w. bitmap past 8 KiB": (replace("w.0", b"b" + b"\x00" * 8200), REELS, "claim"),
        "another feed's array of an even length": (replace("1.0", lambda v: v[:-1]), WEIGHTED, "claim"),
        "a container where the feed has no block yet": (lambda c: c.hset(KEY, "1.7", b"a\x05\x00"), REELS,
                                                         "claim 7"),
    }


CONTAINER_CASES = _container_cases()


@pytest.mark.parametrize("name", list(CONTAINER_CASES))
def test_damage_a_page_reads_is_found_by_it(store, client, name):
    damage, feed, how = CONTAINER_CASES[name]
    served_session(store, client)
    damage(client)
    assert store.summary("s").served_items_count == 207  # inspection reads no container, checks no state
    if how == "read":
        assert read(store, feed) == PageResult(PageStatus.ABSENT, FeedView(b"", ()))
    else:
        current = read(store, feed)
        assert current.status is PageStatus.SERVED and current.positions == SERVED[feed]
        positions, canonical = CLAIMS[feed] if how == "claim" else ([7 * BLOCK + 3, 7 * BLOCK + 4], None)
        assert claim(store, feed, positions, view=current.view, canonical=canonical).status is PageStatus.ABSENT
    # Found: the session is gone for every page and for inspection, and is replaced whole.
    assert_gone(store, client)


@pytest.mark.parametrize("name", ["array of garbage", "a block's container missing", "w. container of garbage",
                                  "feed state served past its index"])
def test_a_reset_of_a_session_with_damage_a_page_reads(store, client, name):
    """Before a page finds the damage the session is whole to a reset (its count is ``n``); after,
    it is gone."""
    damage, feed, how = CONTAINER_CASES[name]
    served_session(store, client)
    damage(client)
    assert_reset_leaves_its_record(store, client, found=True, cleared=207)
    served_session(store, client)
    damage(client)
    if how == "read":
        read(store, feed)
    else:
        claim(store, feed, *CLAIMS[feed], view=read(store, feed).view)
    assert_reset_leaves_its_record(store, client, found=False)


@pytest.mark.parametrize("damaged", [array(100, 0), array(0)], ids=["not ascending", "cut short"])
def test_an_array_is_checked_where_it_becomes_a_bitmap(store, client, damaged):
    """A page that outgrows an array rewrites it as a bitmap: an array whose lows do not ascend, or
    fewer than its count (none of them in the page, which reads only new ones), is found there,
    before anything is written."""
    client.delete(KEY)
    claim(store, REELS, [0, 100], create=True)
    assert client.hget(KEY, "1.0") == array(0, 100)
    client.hset(KEY, "1.0", damaged)
    grown = claim(store, REELS, list(range(101, 151)), view=FeedView(SEED, BOUNDS, 101, 2))
    assert grown == PageResult(PageStatus.ABSENT, FeedView(b"", ()))
    assert_gone(store, client)


def test_a_feed_state_with_a_partial_entry_that_reads_as_whole(store, client):
    """Three bytes past a state whose last entry counts 256: its last six bytes read as an entry
    counting 256 too. Its length gives it away."""
    client.delete(KEY)
    claim(store, REELS, list(range(256)), create=True)
    client.hset(KEY, "f1", state(client, 1) + b"\x01\x00\x00")
    assert_gone(store, client)


# --- Harmless -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bounds", [(), (BOUNDS[0], BOUNDS[0]), (3 * BLOCK,)],
                         ids=["none", "an epoch repeated", "below a feed's cursor"])
def test_bounds_a_caller_may_create_are_no_damage(store, client, bounds):
    """A creating page takes the caller's bounds as they are, as the memory store does
    (test_store_contract.py creates sessions of no bounds, and of an epoch repeated, and grows
    them under feeds whose cursors are past them): a session of such bounds is whole. So are
    bounds lowered below a feed's cursor, which no check can tell from those."""
    served_session(store, client)
    client.hset(KEY, "b", struct.pack(f"<{len(bounds)}I", *bounds))
    for feed, positions in SERVED.items():
        assert read(store, feed).positions == positions
    assert store.summary("s").served_items_count == 207
    assert_reset_leaves_its_record(store, client, found=True, cleared=207)


def test_a_count_not_the_feeds_sum_is_harmless(store, client):
    """``n``, the items served, is the sum of the feeds' served counts; checking that would take every
    feed's state on every page. A wrong count is shown, and bounds ``max_items``, nothing more."""
    served_session(store, client)
    client.hset(KEY, "n", b"300")
    for feed, positions in SERVED.items():
        assert read(store, feed).positions == positions
    assert claim(store, REELS, *CLAIMS[REELS], view=read(store, REELS).view).status is PageStatus.SERVED
    assert store.summary("s").served_items_count == 302
    assert_reset_leaves_its_record(store, client, found=True, cleared=302)


def test_an_unknown_field_is_harmless(store, client):
    """No script reads a field it does not name: the session serves on, the field stays until the
    hash is replaced (a reset, a creating page over a session gone)."""
    served_session(store, client)
    client.hset(KEY, mapping={"zz": b"\xff" * 3, "f9": b"\x00", "9.0": b"zzz", "x.1": b""})
    for feed, positions in SERVED.items():
        assert read(store, feed).positions == positions
    claimed = claim(store, REELS, *CLAIMS[REELS], view=read(store, REELS).view)
    assert claimed.status is PageStatus.SERVED and claimed.positions == CLAIMS[REELS][0]
    assert store.summary("s").served_items_count == 209
    assert {b"zz", b"f9", b"9.0", b"x.1"} <= set(client.hkeys(KEY))
    assert_reset_leaves_its_record(store, client, found=True, cleared=209)


@pytest.mark.parametrize("record", [b"", b"garbage", b"a:b:c", b"id:12:7", b"::", b"\xff" * 100])
def test_a_malformed_reset_record_is_harmless(store, client, record):
    """The record is only ever compared with a reset's own id (a random 16 hex digits): a malformed
    one matches none; a page keeps it, a reset replaces it."""
    served_session(store, client)
    client.hset(KEY, "r", record)
    assert read(store, REELS).positions == SERVED[REELS] and store.summary("s").served_items_count == 207
    assert client.hget(KEY, "r") == record
    assert_reset_leaves_its_record(store, client, found=True, cleared=207)
    # A record alone (a reset's) that is malformed: no session; a new one keeps the record.
    client.delete(KEY)
    client.hset(KEY, "r", record)
    assert read(store, REELS).status is PageStatus.ABSENT and store.summary("s") is None
    assert fresh_page(store).status is PageStatus.SERVED
    assert set(client.hkeys(KEY)) == FRESH_FIELDS | {b"r"} and client.hget(KEY, "r") == record
    assert_reset_leaves_its_record(store, client, found=True, cleared=5)


# --- Random damage --------------------------------------------------------------------------------

MUTABLE = sorted(FIELDS | {b"r"})
damages = st.lists(st.tuples(
    st.sampled_from(MUTABLE),
    st.one_of(st.tuples(st.just("replace"), st.binary(max_size=40)),
              st.tuples(st.just("truncate"), st.integers(0, 40)),
              st.tuples(st.just("extend"), st.binary(min_size=1, max_size=40)),
              st.tuples(st.just("delete"), st.none()))), min_size=1, max_size=2)


def _ids(registry: bytes | None) -> list[bytes]:
    registry = registry or b""
    return [registry[at:at + 9] for at in range(0, len(registry), 9)]


def _damage(client, damage) -> set[bytes]:
    """Apply random damage; the fields whose value changed."""
    changed = set()
    for field, (how, argument) in damage:
        before = client.hget(KEY, field)
        if how == "delete":
            client.hdel(KEY, field)
            after = None
        else:
            old = before or b""
            after = (argument if how == "replace" else old[:argument] if how == "truncate" else old + argument)
            client.hset(KEY, field, after)
        if after != before:
            changed.add(field)
    return changed


@settings(max_examples=int(os.environ.get("DAMAGE_EXAMPLES", "150")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(damage=damages)
def test_random_damage_is_gone_or_harmless(store, client, damage):
    """Whatever the damage: no script error; a read serves the feed's own positions or nothing of
    the session (ABSENT), as the summary agrees after it; a creating page replaces a session gone
    whole; a reset leaves only its record, ``found`` as the summary said. What no check can tell
    from an intact session: a seed replaced by 8 other bytes is a session of that seed (STALE to
    the caller's); a registry replaced by ids of a whole length no longer names the feeds (their
    reads serve nothing); a container replaced by bytes of its kind and a size it may have holds
    other positions of its block."""
    served_session(store, client)
    changed = _damage(client, damage)
    other_seed = b"s" in changed and len(client.hget(KEY, "s") or b"") == 8
    for number, (feed, positions) in enumerate(SERVED.items(), 1):
        result = read(store, feed)
        if result.status is PageStatus.SERVED:
            if b"k" in changed and feed not in _ids(client.hget(KEY, "k")):
                assert result.positions == [] and result.view.served == 0
            elif any(field.startswith(b"%d." % number) for field in changed):
                # A container's bytes replaced by others of its kind and a size it may have (a
                # bitmap's bits, an array's lows): the feed's positions, as many, in its blocks.
                assert [p // BLOCK for p in result.positions] == [p // BLOCK for p in positions], (feed, result)
            else:
                assert result.positions == positions, (feed, result)
        else:
            assert result.status is PageStatus.ABSENT or (other_seed and result.status is PageStatus.STALE), result
    summary = store.summary("s")
    gone = summary is None
    if gone:
        assert all(read(store, feed).status is PageStatus.ABSENT for feed in SERVED)
    assert isinstance(store.session_count(), int) and isinstance(store.session_ids(), list)
    record = client.hget(KEY, "r") if client.type(KEY) == b"hash" else None
    result = store.reset("s")
    assert result.found is not gone and result.cleared_items_count == (0 if gone else summary.served_items_count)
    assert list(client.hgetall(KEY)) == [b"r"] and client.hget(KEY, "r") != record
    # And a creating page over a damaged session replaces it whole.
    served_session(store, client)
    _damage(client, damage)
    for feed in SERVED:
        read(store, feed)
    if store.summary("s") is None:
        record = client.hget(KEY, "r")
        assert fresh_page(store).status is PageStatus.SERVED
        assert set(client.hkeys(KEY)) == FRESH_FIELDS | ({b"r"} if record is not None else set())


# --- Through the HTTP API and flask sessions ------------------------------------------------------

CATALOG_ITEMS = 400


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory):
    return seeded_catalog_url(tmp_path_factory.mktemp("damaged"), CATALOG_ITEMS)


@pytest.fixture
def new_app(make_app, redis_clean):
    """An app on the module's catalog and the test's redis-server (closed after the test)."""
    return lambda: make_app(redis_clean.url)


def _page(http, offset=0, limit=10, path="/api/reels"):
    response = http.get(path, query_string={"random_order": "true", "session_id": "s", "offset": offset,
                                            "limit": limit})
    body = response.get_json()
    assert response.status_code == 200, body
    return [item["id"] for item in body["data"]["reels"]], \
        response.headers["X-Session-Order"]


def _container(client, feed_number: int) -> str:
    return next(name.decode() for name in sorted(client.hkeys(KEY)) if name.startswith(b"%d." % feed_number))


HTTP_DAMAGE = {
    "n not a number": lambda c: c.hset(KEY, "n", b"x"),
    "c not a number": lambda c: c.hset(KEY, "c", b"x"),
    "bounds descending": lambda c: c.hset(KEY, "b", c.hget(KEY, "b") + struct.pack("<I", 1)),
    "feed state cut": lambda c: c.hset(KEY, "f1", state(c, 1)[:-1]),
    "container of garbage": lambda c: c.hset(KEY, _container(c, 1), b"zzzzz"),
    "container missing": lambda c: c.hdel(KEY, _container(c, 1)),
    "array of positions past the cursor": lambda c: c.hset(KEY, _container(c, 1), b"a" + b"\xff\xff" * 10),
    "bounds lowered below the served positions": lambda c: c.hset(KEY, "b", struct.pack("<I", 1)),
    "bounds emptied": lambda c: c.hset(KEY, "b", b""),
    "a string at the key": lambda c: (c.delete(KEY), c.set(KEY, "x")),
    "a list at the key": lambda c: (c.delete(KEY), c.rpush(KEY, "x")),
}


@pytest.mark.parametrize("name", list(HTTP_DAMAGE))
@pytest.mark.parametrize("process", ["same", "another"])
def test_a_damaged_session_through_http_starts_anew(new_app, client, name, process):
    """The process that served the session (its view remembered) or another one (none): the next
    page is 200, of a new session (a new order), its first page; inspection and reset answer."""
    app = new_app()
    http = app.test_client()
    first, order = _page(http)
    second, _ = _page(http, 10)
    _page(http, 0, 10, "/api/posts")
    HTTP_DAMAGE[name](client)
    if process == "another":
        app = new_app()
        http = app.test_client()
    inspected = http.get("/api/sessions/s")
    assert inspected.status_code in (200, 404), inspected.get_json()
    if inspected.status_code == 404:
        assert inspected.get_json()["error_code"] == "SESSION_NOT_FOUND"
    again, new_order = _page(http, 0, 10)  # served before: a replay, read from the session
    assert new_order != order and len(again) == 10
    assert client.type(KEY) == b"hash" and client.hget(KEY, "n") == b"10"
    assert all(field in (b"s", b"b", b"k", b"n", b"c", b"f1", b"r") or field.startswith(b"1.")
               for field in client.hkeys(KEY)), client.hkeys(KEY)
    shown = http.get("/api/sessions/s").get_json()["data"]["session"]
    assert shown["served_items_count"] == 10 and len(shown["feeds"]) == 1
    HTTP_DAMAGE[name](client)
    reset = http.post("/api/reset-session", query_string={"session_id": "s"})
    assert reset.status_code == 200, reset.get_json()
    assert list(client.hgetall(KEY)) == [b"r"]
    assert _page(http)[1] not in (order, new_order)


@pytest.mark.parametrize("name", ["n not a number", "c not a number", "container of garbage", "a string at the key"])
def test_flask_sessions_on_a_damaged_session(new_app, client, name):
    app = new_app()
    _page(app.test_client())
    HTTP_DAMAGE[name](client)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["sessions", "list"])
    assert listed.exit_code == 0 and listed.exception is None, listed.output
    shown = runner.invoke(args=["sessions", "show", "s"])
    assert shown.exception is None or isinstance(shown.exception, SystemExit), shown.exception
    if shown.exit_code == 0:  # a container's damage: no page has read it yet
        assert json.loads(shown.stdout)["served_items_count"] == 10
    else:
        assert "no session s (unknown, expired or reset)" in shown.output
    reset = runner.invoke(args=["sessions", "reset", "s"])
    assert reset.exit_code == 0 and reset.exception is None, reset.output
    assert list(client.hgetall(KEY)) == [b"r"]
    stats = runner.invoke(args=["sessions", "stats"])
    assert stats.exit_code == 0, stats.output


def test_no_script_error_escapes_as_a_500_for_a_damaged_session_anywhere(new_app, client):
    """Every route a session id reaches, over every damage of HTTP_DAMAGE: never a 500."""
    app = new_app()
    http = app.test_client()
    for name, damage in HTTP_DAMAGE.items():
        client.delete(KEY)
        _page(http)
        _page(http, 10)
        damage(client)
        for method, path, query in (("get", "/api/reels", {"random_order": "true", "limit": 10}),
                                    ("get", "/api/posts", {"random_order": "weighted"}),
                                    ("get", "/api/sessions/s", {}),
                                    ("post", "/api/reset-session", {})):
            response = getattr(http, method)(path, query_string={"session_id": "s", **query})
            body = response.get_json()
            assert response.status_code < 500, (name, path, body)
            assert set(body) >= {"success"}, body

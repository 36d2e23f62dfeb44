"""Weighted random feeds (``random_order=weighted``, ``viralspot/feed/weights.py``).

* **The rule**, statistically: over 2,000 sessions (seeds pinned: ``Seeds`` of the property
  tests) on a catalog of known weights, how often each weight class comes in the first page
  matches the documented rule, each next item drawn with probability proportional to its tickets
  among those not yet served (expected counts computed exactly; chi-square, p > 0.001). With
  the exponent 0 the order is uniform over the matching items.
* **The feed contract** on every store backend (memory, Redis, Redis Cluster), deep enough to
  span several 64 Ki-position blocks of the Redis layout: every matching item once, nothing a
  uniform feed of the session served (and the other way round), replays equal the served
  sequence from another process, items added while the feed runs come, a reset clears it all.
  (The Hypothesis state machine of ``test_feed_properties.py`` runs weighted feeds beside
  uniform ones too.)
* **Through the API** over the SQL catalog: coverage, the higher-scored items earlier, and the
  400s and the start-up refusal of bad values.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from test_feed_algorithm import SECRET, ListCatalog, drain, keys_of, serve
from test_feed_algorithm import request as page_args
from test_feed_properties import Seeds, emptier, feed_sequence
from test_random_feed_api import chi_square_critical
from viralspot import create_app
from viralspot.feed import service as service_module
from viralspot.feed.errors import WeightedOutOfRange
from viralspot.feed.service import RandomFeedService
from viralspot.feed.weights import MAX_TICKETS, ticket_counts
from viralspot.store.memory import MemorySessionStore

WEIGHTED = {"random_order": "weighted"}


def weighted_service(store, catalog, exponent=1.0, **options):
    return RandomFeedService(SECRET, store, catalog, max_ahead=options.get("max_ahead", 1000), max_offset=10 ** 6,
                             max_scan=10 ** 7, weight_exponent=exponent)


def tickets_of(keys, exponent=1.0):
    """The tickets of ListCatalog keys (whose outlier score is ``key % 11``)."""
    return ticket_counts(np.asarray(keys) % 11, exponent).tolist()


# --- the rule ------------------------------------------------------------------------------------


def test_tickets_are_the_rounded_power_of_the_outlier_score_from_1_to_8():
    scores = [0, 0.05, 0.5, 1, 1.4, 1.6, 2.5, 3.5, 7.4, 7.6, 250]
    assert ticket_counts(scores, 1).tolist() == [1, 1, 1, 1, 1, 2, 2, 4, 7, 8, 8]  # halves to even
    assert ticket_counts([4, 9, 2, 250], 0.5).tolist() == [2, 3, 1, 8]
    assert ticket_counts([2, 3], 2).tolist() == [4, 8]
    assert set(ticket_counts(scores, 0).tolist()) == {1}
    assert MAX_TICKETS == 8


def expected_first_page(sizes: dict[int, int], page: int) -> dict[int, float]:
    """Expected items of each ticket class (tickets -> items in it) in the first ``page`` items when
    each next item is drawn with probability proportional to its tickets among those not yet served:
    exact, over every way the page can split among the classes."""
    classes = sorted(sizes)
    states = {tuple(0 for _ in classes): 1.0}
    for _step in range(page):
        following: dict[tuple, float] = {}
        for drawn, chance in states.items():
            remaining = [sizes[c] - d for c, d in zip(classes, drawn)]
            mass = sum(c * r for c, r in zip(classes, remaining))
            for index, (tickets, left) in enumerate(zip(classes, remaining)):
                if left:
                    step = drawn[:index] + (drawn[index] + 1,) + drawn[index + 1:]
                    following[step] = following.get(step, 0.0) + chance * tickets * left / mass
        states = following
    return {c: sum(chance * drawn[index] for drawn, chance in states.items()) for index, c in enumerate(classes)}


def test_the_exact_expectation_is_the_mass_share_for_one_item_and_counts_every_item():
    sizes = {1: 30, 2: 10, 8: 5}
    first = expected_first_page(sizes, 1)
    assert first == pytest.approx({1: 30 / 90, 2: 20 / 90, 8: 40 / 90})
    assert sum(expected_first_page(sizes, 6).values()) == pytest.approx(6)
    assert expected_first_page(sizes, 45) == pytest.approx(sizes)


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_first_pages_of_2000_sessions_follow_the_documented_rule(monkeypatch, exponent):
    monkeypatch.setattr(service_module, "os", Seeds())
    catalog = ListCatalog(1500)
    service = weighted_service(MemorySessionStore(ttl=10 ** 6), catalog, exponent)
    sessions, page = 2000, 10
    counts = Counter()
    for number in range(sessions):
        keys, _page = serve(service, f"w{number}", 0, page, **WEIGHTED)
        assert len(keys) == page
        counts.update(tickets_of(keys, exponent))
    sizes = Counter(tickets_of(range(1, 1501), exponent))
    expected = {c: sessions * share for c, share in expected_first_page(dict(sizes), page).items()}
    assert set(counts) <= set(expected)
    chi_square = sum((counts[c] - e) ** 2 / e for c, e in expected.items())
    assert chi_square < chi_square_critical(len(expected) - 1)
    # Not the uniform order: the first pages carry more tickets an item than the catalog does.
    served_mean = sum(c * n for c, n in counts.items()) / (sessions * page)
    assert served_mean > sum(c * n for c, n in sizes.items()) / 1500 + 0.3


def test_exponent_0_is_uniform_over_the_matching_items(monkeypatch):
    monkeypatch.setattr(service_module, "os", Seeds())
    service = weighted_service(MemorySessionStore(ttl=10 ** 6), ListCatalog(97), exponent=0.0)
    sessions = 2000
    counts = Counter(serve(service, f"u{number}", 0, 1, **WEIGHTED)[0][0] for number in range(sessions))
    expected = sessions / 97
    chi_square = sum((counts[key] - expected) ** 2 / expected for key in range(1, 98))
    assert chi_square < chi_square_critical(96)


# --- the feed contract, on every backend ---------------------------------------------------------------


def test_a_deep_weighted_feed_keeps_the_contract_on_every_backend(make_store, request, monkeypatch):
    """150,000 keys: the weighted feed's items land over three blocks of the session's order, so its
    session-wide containers grow from arrays into bitmaps; the uniform feeds skip exactly what it served
    and it skips what they served; replays from another process; growth; a reset clears it all."""
    monkeypatch.setattr(service_module, "os", Seeds())
    catalog = ListCatalog(150_000)
    stores = emptier(make_store, request)()
    service = weighted_service(stores[0], catalog, max_ahead=5_000)
    other = weighted_service(stores[1], catalog)
    uniform_sparse, _pages = drain(service, "deep", "sparse", limit=500)
    weighted = []
    for offset in range(0, 70_000, 1_000):
        weighted += keys_of(service.serve("reels", page_args("deep", offset, 1_000, "all", **WEIGHTED)))
    assert len(weighted) == len(set(weighted)) == 70_000
    assert not set(weighted) & set(uniform_sparse)
    positions, sequence = feed_sequence(stores[0], "deep", "reels", "all", True)
    assert sequence == weighted and positions == sorted(positions)
    for offset in (0, 33_333, 69_950):
        page = other.serve("reels", page_args("deep", offset, 50, "all", **WEIGHTED))
        assert keys_of(page) == weighted[offset:offset + 50]
    # Heavier items came first: the first 10,000 carry more tickets on average than the last 10,000.
    assert np.mean(tickets_of(weighted[:10_000])) > np.mean(tickets_of(weighted[-10_000:])) + 0.5
    # A uniform feed now skips what the weighted one served.
    thirds, _pages = drain(other, "deep", "thirds", limit=1_000)
    expected_thirds = {key for key in range(1, 150_001) if key % 3 == 1} - set(weighted) - set(uniform_sparse)
    assert len(thirds) == len(set(thirds)) and set(thirds) == expected_thirds
    # Items added while it runs come too; the drain ends with every item once.
    catalog.grow(151_000)
    rest, _pages = drain(service, "deep", "all", limit=1_000, start=70_000, **WEIGHTED)
    everything = uniform_sparse + weighted + thirds + rest
    assert len(everything) == len(set(everything)) == 151_000
    summary = stores[0].summary("deep")
    assert summary.served_items_count == 151_000
    assert stores[1].reset("deep").cleared_items_count == 151_000
    assert stores[0].summary("deep") is None


def test_a_catalog_past_the_weighted_key_limit_is_refused(monkeypatch):
    monkeypatch.setattr(service_module, "MAX_WEIGHTED_KEY", 100)
    service = weighted_service(MemorySessionStore(), ListCatalog(150))
    with pytest.raises(WeightedOutOfRange, match="random_order"):
        serve(service, "big", **WEIGHTED)
    assert serve(service, "big")[0]  # the uniform order serves it


# --- through the API, over the SQL catalog ---------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('weighted') / 'catalog.db'}"
    app = create_app({"CONFIG": "testing", "DATABASE_URL": url})
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", "800", "--seed", "3"])
    assert result.exit_code == 0, result.output
    app.extensions["viralspot.catalog"].dispose()
    return url


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def api(request, catalog_url):
    config = {"CONFIG": "testing", "DATABASE_URL": catalog_url}
    if request.param == "redis":
        config["SESSION_STORE_URL"] = request.getfixturevalue("redis_clean").url
    app = create_app(config)
    yield app.test_client()
    app.extensions["viralspot.session_store"].close()
    app.extensions["viralspot.catalog"].dispose()


def api_page(client, session_id, offset=0, limit=50, mode="weighted"):
    response = client.get("/api/reels", query_string={"random_order": mode, "session_id": session_id,
                                                       "offset": offset, "limit": limit})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    return data["reels"], data["isLastPage"]


def test_a_weighted_feed_through_the_api_serves_every_reel_once_higher_scores_earlier(api, monkeypatch):
    monkeypatch.setattr(service_module, "os", Seeds())  # the session's seed pinned: the same order every run
    plain = []
    offset = 0
    while True:
        data = api.get("/api/reels", query_string={"limit": 100, "offset": offset}).get_json()["data"]
        plain += data["reels"]
        offset += 100
        if data["isLastPage"]:
            break
    scores = {item["id"]: item["outlier_score"] for item in plain}
    served, offset = [], 0
    while True:
        items, last = api_page(api, "api-weighted", offset)
        served += [item["id"] for item in items]
        offset += 50
        if last:
            break
    assert len(served) == len(set(served)) and set(served) == set(scores)
    half = len(served) // 2
    assert np.mean([scores[i] for i in served[:half]]) > np.mean([scores[i] for i in served[half:]])
    # The uniform feed of the same session has nothing left; a replay is the same page.
    assert api_page(api, "api-weighted", 0, 50, "true") == ([], True)
    assert [item["id"] for item in api_page(api, "api-weighted", 100)[0]] == served[100:150]


@pytest.mark.parametrize("value", ["sometimes", "weighted-ish", "2"])
def test_a_bad_random_order_is_a_400_naming_it(client, value):
    response = client.get("/api/reels", query_string={"random_order": value, "session_id": "s"})
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["error_code"] == "INVALID_PARAMETER"
    assert "random_order" in body["detail"] and "weighted" in body["detail"]


def test_weighted_needs_a_session_id(client):
    response = client.get("/api/posts", query_string={"random_order": "Weighted"})
    assert response.status_code == 400 and "session_id" in response.get_json()["detail"]


@pytest.mark.parametrize("exponent", [-1, "-0.5", "heavy", 101])
def test_a_bad_weight_exponent_refuses_to_start(exponent):
    with pytest.raises(RuntimeError, match="VIRALSPOT_WEIGHT_EXPONENT"):
        create_app({"CONFIG": "testing", "WEIGHT_EXPONENT": exponent})

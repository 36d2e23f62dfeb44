"""The keyed Feistel permutation (``feed/permutation.py``) and a session's order of the key space
(``feed/order.py``, ``SessionOrder``).

``KeyedPermutation``: a bijection on ``range(size)``, deterministic, different per key, its
``inverse`` undoing it exactly (sizes from 1 to 10^6 and the order's largest, 2^32 - 1, with the
edge cases of the two-radix rectangle: squares, one past a square, one short of one, primes,
powers of two); the orders pinned across releases.

``SessionOrder``: ``keys_at`` and ``positions_of`` inverse of each other; epoch ``e`` holds the
keys ``(bounds[e-1], bounds[e]]`` at the positions ``[bounds[e-1], bounds[e])`` (bounds
``(a,)``, ``(a, b)``, a first bound of 0 for a catalog that was empty); an order grown by an
epoch keeps every earlier position's key; the order depends on the secret, the session id, the
seed and nothing else.
"""
from __future__ import annotations

import numpy as np
import pytest

from viralspot.feed.order import SessionOrder
from viralspot.feed.permutation import KeyedPermutation, round_keys
from viralspot.store.base import KEY_LIMIT

#: Domain sizes whose rectangle a x b (a = ceil(sqrt(size))) has each kind of edge: 1 and tiny
#: sizes, perfect squares (no overshoot), one past a square (the largest overshoot), one short of
#: a square, primes, powers of two and their neighbours, and the 10^6 a large catalog reaches.
EDGE_SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 99, 100, 101, 1023, 1024, 1025, 4095, 4096, 4097,
              65_535, 65_536, 65_537, 999_999, 1_000_000]
SEED = bytes(range(8))


# --- KeyedPermutation ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_is_a_bijection_on_its_domain_and_inverse_undoes_it(size):
    permutation = KeyedPermutation(round_keys(b"k", "s", 0), size)
    positions = np.arange(size)
    images = permutation(positions)
    assert images.dtype == np.int64
    assert images.min() >= 0 and images.max() < size
    assert len(np.unique(images)) == size
    back = permutation.inverse(images)
    assert back.dtype == np.int64 and np.array_equal(back, positions)
    # ... and the other way round: the inverse is a bijection the permutation undoes.
    assert np.array_equal(permutation(permutation.inverse(positions)), positions)


@pytest.mark.parametrize("size", [KEY_LIMIT, 2 ** 31 + 11, 10 ** 9 + 7])
def test_inverse_round_trips_on_the_largest_domains(size):
    """The order's largest domain (2^32 - 1 keys) and others past 2^31: sampled, with both ends."""
    permutation = KeyedPermutation(round_keys(b"k", "large", size), size)
    rng = np.random.default_rng(size % 1000)
    positions = np.concatenate([np.arange(5), size - 1 - np.arange(5), rng.integers(0, size, 20_000)])
    images = permutation(positions)
    assert images.min() >= 0 and images.max() < size
    assert np.array_equal(permutation.inverse(images), positions)
    assert np.array_equal(permutation(permutation.inverse(positions)), positions)
    assert len(np.unique(images)) == len(np.unique(positions))


def test_is_deterministic_across_instances():
    a = KeyedPermutation(round_keys(b"secret", "session", 3), 10_000)
    b = KeyedPermutation(round_keys(b"secret", "session", 3), 10_000)
    positions = np.arange(0, 10_000, 7)
    assert np.array_equal(a(positions), b(positions))
    assert np.array_equal(a.inverse(positions), b.inverse(positions))
    assert int(a(np.array([1234]))[0]) == int(b(np.array([1234]))[0])


@pytest.mark.parametrize("other", [(b"secret", "session", 4), (b"secret", "other", 3), (b"secret2", "session", 3)])
def test_differs_per_key(other):
    base = KeyedPermutation(round_keys(b"secret", "session", 3), 10_000)(np.arange(100))
    changed = KeyedPermutation(round_keys(*other), 10_000)(np.arange(100))
    assert np.count_nonzero(base == changed) < 5


def test_rejects_positions_and_images_outside_the_domain():
    permutation = KeyedPermutation(round_keys(b"k"), 10)
    for outside in ([10], [-1], [3, 10]):
        with pytest.raises(ValueError):
            permutation(np.array(outside))
        with pytest.raises(ValueError):
            permutation.inverse(np.array(outside))
    with pytest.raises(ValueError):
        KeyedPermutation(round_keys(b"k"), 0)
    with pytest.raises(ValueError):
        KeyedPermutation(round_keys(b"k")[:5], 10)  # an odd number of rounds is no bijection
    assert permutation(np.array([], dtype=np.int64)).tolist() == []
    assert permutation.inverse(np.array([], dtype=np.int64)).tolist() == []


@pytest.mark.parametrize("size", [7, 34, 97, 400])
def test_first_position_is_uniform_over_many_keys(size):
    """Chi-square, per image, of where position 0 lands under 100 keys per image."""
    trials = 100 * size
    counts = np.zeros(size)
    for trial in range(trials):
        counts[int(KeyedPermutation(round_keys(b"k", trial), size)(np.array([0]))[0])] += 1
    chi_square = float(((counts - 100) ** 2 / 100).sum())
    k = size - 1
    assert chi_square < k * (1 - 2 / (9 * k) + 3.09 * (2 / (9 * k)) ** 0.5) ** 3  # p = 0.001


def test_consecutive_positions_are_not_correlated():
    permutation = KeyedPermutation(round_keys(b"k", "corr"), 100_000)
    images = permutation(np.arange(20_000)).astype(float)
    correlation = np.corrcoef(images[:-1], images[1:])[0, 1]
    assert abs(correlation) < 0.05


@pytest.mark.parametrize(("size", "expected"), [
    (10, [7, 6, 0, 4, 1, 2, 9, 8]),
    (1_000_000, [829411, 663336, 296542, 797939, 428435, 308705, 304300, 731032]),
])
def test_orders_never_change_between_releases(size, expected):
    # Sessions outlive deployments: a rewrite of the network must map every position as before.
    # (Pinned again for the multiply-shift round function of session state v2: nothing was deployed.)
    keys = round_keys(b"golden-secret", "feed", "golden-session", 0)
    permutation = KeyedPermutation(keys, size)
    assert permutation(np.arange(len(expected))).tolist() == expected
    assert permutation.inverse(expected).tolist() == list(range(len(expected)))


# --- SessionOrder ----------------------------------------------------------------------------------


def order(bounds, session_id="s", seed=SEED, secret=b"secret") -> SessionOrder:
    return SessionOrder(secret, session_id, seed, tuple(bounds))


BOUNDS = [(1,), (2,), (17,), (1000,), (0, 1), (0, 37), (37, 38), (1000, 1500), (500, 501, 2000), (1, 2, 3, 4),
          (0, 0 + 64, 65_600)]


@pytest.mark.parametrize("bounds", BOUNDS, ids=str)
def test_keys_at_and_positions_of_are_inverse_bijections(bounds):
    session = order(bounds)
    end = bounds[-1]
    assert session.end == end
    positions = np.arange(end)
    keys = session.keys_at(positions)
    assert keys.dtype == np.int64
    assert sorted(keys.tolist()) == list(range(1, end + 1))  # every key of 1..end, once
    assert np.array_equal(session.positions_of(keys), positions)
    every_key = np.arange(1, end + 1)
    assert np.array_equal(session.keys_at(session.positions_of(every_key)), every_key)
    assert np.array_equal(session.keys_between(0, end), keys)
    # Any subset, in any order, maps element by element.
    rng = np.random.default_rng(end)
    some = rng.permutation(end)[: max(1, end // 3)]
    assert np.array_equal(session.keys_at(some), keys[some])
    assert np.array_equal(session.positions_of(keys[some]), some)


@pytest.mark.parametrize("bounds", [bounds for bounds in BOUNDS if len(bounds) > 1], ids=str)
def test_each_epoch_holds_its_keys_at_its_positions(bounds):
    session = order(bounds)
    start = 0
    for stop in bounds:
        keys = session.keys_between(start, stop)
        assert sorted(keys.tolist()) == list(range(start + 1, stop + 1)), (start, stop)
        start = stop


def test_an_empty_key_space_has_no_positions():
    for bounds in ((0,), ()):
        session = order(bounds)
        assert session.end == 0
        assert session.keys_between(0, 0).tolist() == []
        assert session.keys_at([]).tolist() == [] and session.positions_of([]).tolist() == []


@pytest.mark.parametrize("first, grown", [((1000,), (1000, 1300)), ((0,), (0, 50)), ((40,), (40, 41)),
                                          ((100, 200), (100, 200, 10_000)), ((5,), (5, 6, 7, 2000))])
def test_a_grown_order_keeps_every_earlier_positions_key(first, grown):
    before, after = order(first), order(grown)
    end = first[-1]
    assert np.array_equal(after.keys_between(0, end), before.keys_between(0, end))
    keys = np.arange(1, end + 1)
    assert np.array_equal(after.positions_of(keys), before.positions_of(keys))
    # The new keys come after every earlier one.
    assert sorted(after.keys_between(end, grown[-1]).tolist()) == list(range(end + 1, grown[-1] + 1))


def test_the_order_is_a_function_of_secret_session_seed_and_bounds():
    base = order((5000,)).keys_between(0, 100)
    assert np.array_equal(order((5000,)).keys_between(0, 100), base)  # a new instance: the same order
    for other in (order((5000,), session_id="t"), order((5000,), seed=bytes(8)), order((5000,), secret=b"x")):
        assert np.count_nonzero(other.keys_between(0, 100) == base) < 5


def test_the_largest_key_space_round_trips():
    session = order((KEY_LIMIT - 10, KEY_LIMIT))
    positions = np.array([0, 1, 2, 12345, KEY_LIMIT - 11, KEY_LIMIT - 10, KEY_LIMIT - 1])
    keys = session.keys_at(positions)
    assert keys[:5].max() <= KEY_LIMIT - 10 and keys[5:].min() > KEY_LIMIT - 10 and keys.max() <= KEY_LIMIT
    assert np.array_equal(session.positions_of(keys), positions)


def test_session_orders_never_change_between_releases():
    # The order of a live session is recomputed by every process after a deployment: pinned.
    session = SessionOrder(b"golden-secret", "golden-session", bytes(range(8)), (10, 1000, 10 ** 6))
    assert session.keys_at([0, 1, 2, 9, 10, 11, 999, 1000, 999_999]).tolist() == \
        [10, 6, 9, 5, 156, 782, 425, 438168, 156635]
    empty_first = SessionOrder(b"golden-secret", "golden-session", bytes(range(8)), (0, 7))
    assert empty_first.keys_between(0, 7).tolist() == [5, 2, 1, 6, 3, 7, 4]

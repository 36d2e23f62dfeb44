"""The keyed Feistel permutation: a bijection, deterministic, different per key."""
from __future__ import annotations

import numpy as np
import pytest

from viralspot.feed.permutation import LOOKAHEAD, KeyedPermutation, round_keys


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 100, 1023, 1024, 1025, 65_537, 1_000_003])
def test_is_a_bijection_on_its_domain(size):
    permutation = KeyedPermutation(round_keys(b"k", "s", 0), size)
    images = permutation(np.arange(size))
    assert images.min() >= 0 and images.max() < size
    assert len(np.unique(images)) == size


def test_is_deterministic_across_instances():
    a = KeyedPermutation(round_keys(b"secret", "session", 3), 10_000)
    b = KeyedPermutation(round_keys(b"secret", "session", 3), 10_000)
    positions = np.arange(0, 10_000, 7)
    assert np.array_equal(a(positions), b(positions))
    assert int(a(np.array([1234]))[0]) == int(b(np.array([1234]))[0])


@pytest.mark.parametrize("other", [(b"secret", "session", 4), (b"secret", "other", 3), (b"secret2", "session", 3)])
def test_differs_per_key(other):
    base = KeyedPermutation(round_keys(b"secret", "session", 3), 10_000)(np.arange(100))
    changed = KeyedPermutation(round_keys(*other), 10_000)(np.arange(100))
    assert np.count_nonzero(base == changed) < 5


def test_rejects_positions_outside_the_domain():
    permutation = KeyedPermutation(round_keys(b"k"), 10)
    with pytest.raises(ValueError):
        permutation(np.array([10]))
    with pytest.raises(ValueError):
        KeyedPermutation(round_keys(b"k"), 0)


@pytest.mark.parametrize("size", [7, 34, 97, 1000])
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


def test_map_range_is_the_permutation_of_that_slice():
    perm = KeyedPermutation(round_keys(b"secret", "slice"), 1000)
    assert perm.map_range(100, 160).tolist() == perm(np.arange(100, 160)).tolist()
    assert perm.map_range(5, 5).tolist() == []
    with pytest.raises(ValueError):
        perm.map_range(990, 1001)
    with pytest.raises(ValueError):
        perm.map_range(-1, 3)


@pytest.mark.parametrize("size", [1, 600, 100_003])
def test_map_range_gives_the_same_images_whatever_block_it_maps_ahead(size):
    # map_range maps LOOKAHEAD positions at once and slices later ranges from that block.
    perm = KeyedPermutation(round_keys(b"secret", "ahead"), size)
    everything = KeyedPermutation(round_keys(b"secret", "ahead"), size)(np.arange(size))
    rng = np.random.default_rng(size)
    ranges = [(0, min(size, 24)), (0, min(size, 24)), (min(size, 24), min(size, 48)), (size - 1, size)]
    for _ in range(200):
        start = int(rng.integers(0, size))
        ranges.append((start, min(size, start + int(rng.integers(0, 2 * LOOKAHEAD)))))
    for start, stop in ranges:
        images = perm.map_range(start, stop)
        assert images.dtype == np.int64
        assert images.tolist() == everything[start:stop].tolist()
        images[:] = -1  # the caller's own copy: the block it came from is unchanged
    assert perm.map_range(0, min(size, 24)).tolist() == everything[:24].tolist()


@pytest.mark.parametrize(("size", "expected"), [
    (10, [7, 5, 2, 3, 1, 0, 4, 9]),
    (1_000_000, [453796, 36179, 183762, 82841, 665240, 984842, 794794, 789263]),
])
def test_orders_never_change_between_releases(size, expected):
    # Sessions outlive deployments: a rewrite of the network must map every position as before.
    keys = round_keys(b"golden-secret", "feed", "golden-session", 0)
    assert KeyedPermutation(keys, size).map_range(0, len(expected)).tolist() == expected

"""A keyed pseudo-random permutation of ``range(size)``: a Feistel network with cycle-walking.

The network works on ``n = ceil(log2(size))`` bits split into a left part of
``n // 2`` bits and a right part of ``n - n // 2`` bits. Each round XORs one
part with a keyed mix of the other (alternating), which is invertible whatever
the two widths, so the network is a bijection on ``[0, 2**n)`` with
``2**n < 2 * size``. Values that land at or above ``size`` are fed through
again (cycle-walking) until they fall inside, which keeps it a bijection on
``range(size)`` and costs under two passes on average.

Six rounds (three per part) with a multiply-xorshift round function keyed by
64-bit round keys from HMAC-SHA-512: the order is a function of the key alone
(no process state, no global ``random``), so every server computes the same
one. Everything is vectorized with numpy; the cost is per numpy operation, not
per position, which is why the round function is four operations long.
"""
from __future__ import annotations

import hashlib
import hmac

import numpy as np

ROUNDS = 6
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(32)


def round_keys(secret: bytes, *parts: object) -> np.ndarray:
    """``ROUNDS`` 64-bit round keys from HMAC-SHA-512(secret, parts)."""
    message = "\x1f".join(str(part) for part in parts).encode()
    digest = hmac.new(secret, message, hashlib.sha512).digest()
    return np.frombuffer(digest, dtype="<u8")[:ROUNDS].copy()


def _mix(values: np.ndarray, key: np.uint64) -> np.ndarray:
    """Multiply-xorshift of ``values ^ key`` (wrapping uint64 arithmetic): high bits fold into low."""
    z = (values ^ key) * _MULTIPLIER
    return z ^ (z >> _SHIFT)


class KeyedPermutation:
    """A bijection on ``range(size)`` chosen by ``keys`` (from ``round_keys``)."""

    __slots__ = ("size", "_keys", "_right_bits", "_right_mask", "_left_mask")

    def __init__(self, keys: np.ndarray, size: int) -> None:
        if size < 1:
            raise ValueError("a permutation needs a size of at least 1")
        if size > 1 << 62:
            raise ValueError("size too large")
        bits = max(2, (size - 1).bit_length())
        left_bits = bits // 2
        right_bits = bits - left_bits
        self.size = size
        self._keys = [np.uint64(k) for k in keys]
        self._right_bits = np.uint64(right_bits)
        self._right_mask = np.uint64((1 << right_bits) - 1)
        self._left_mask = np.uint64((1 << left_bits) - 1)

    def _network(self, values: np.ndarray) -> np.ndarray:
        left = values >> self._right_bits
        right = values & self._right_mask
        for index, key in enumerate(self._keys):
            if index % 2 == 0:
                right = right ^ (_mix(left, key) & self._right_mask)
            else:
                left = left ^ (_mix(right, key) & self._left_mask)
        return (left << self._right_bits) | right

    def __call__(self, positions) -> np.ndarray:
        """Map positions (array-like of ints in ``range(size)``) to their images, as int64."""
        values = np.asarray(positions, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() >= self.size):
            raise ValueError("position outside the permutation's domain")
        size = np.uint64(self.size)
        out = self._network(values.astype(np.uint64))
        outside = np.nonzero(out >= size)[0]
        while outside.size:
            out[outside] = self._network(out[outside])
            outside = outside[out[outside] >= size]
        return out.astype(np.int64)

    def at(self, position: int) -> int:
        """The image of one position."""
        return int(self(np.array([position]))[0])

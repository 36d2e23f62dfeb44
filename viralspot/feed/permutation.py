"""A keyed pseudo-random permutation of ``range(size)``: a Feistel network on a two-radix domain.

The domain ``size`` is covered by a rectangle ``a x b`` with ``a = ceil(sqrt(size))``
and ``b = ceil(size / a)``, so ``a * b - size < a``: a value ``v`` is the pair
``(v // b, v % b)``. Each round maps ``(L, R)`` (``L`` below ``m``) to
``(R, (L + F(R)) mod m)``, alternating ``m`` between ``a`` and ``b``; that is
invertible whatever ``F`` is, so after an even number of rounds the network is
a bijection on ``[0, a * b)`` (the construction of FF1, Black and Rogaway's
generalized Feistel). Values landing at or above ``size`` go through again
(cycle-walking), which keeps it a bijection on ``range(size)``. Because the
rectangle overshoots ``size`` by less than ``sqrt(size)``, a second pass is
needed for fewer than one position in ``sqrt(size)`` (a power-of-two domain,
the textbook choice, sends up to half of them round again).

Six rounds with a multiply-shift round function keyed by 64-bit round keys
from HMAC-SHA-512: the order is a function of the key alone (no process state,
no global ``random``), so every server computes the same one. Everything is
vectorized with numpy; the cost is per numpy operation, not per position.
"""
from __future__ import annotations

import hashlib
import hmac
import math

import numpy as np

ROUNDS = 6
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(32)


def round_keys(secret: bytes, *parts: object) -> np.ndarray:
    """``ROUNDS`` 64-bit round keys from HMAC-SHA-512(secret, parts)."""
    message = "\x1f".join(str(part) for part in parts).encode()
    digest = hmac.new(secret, message, hashlib.sha512).digest()
    return np.frombuffer(digest, dtype="<u8")[:ROUNDS].copy()


class KeyedPermutation:
    """A bijection on ``range(size)`` chosen by ``keys`` (from ``round_keys``)."""

    __slots__ = ("size", "_keys", "_moduli", "_width")

    def __init__(self, keys: np.ndarray, size: int) -> None:
        if size < 1:
            raise ValueError("a permutation needs a size of at least 1")
        if size > 1 << 62:
            raise ValueError("size too large")
        if len(keys) % 2:
            raise ValueError("the network needs an even number of round keys")
        rows = math.isqrt(size - 1) + 1  # ceil(sqrt(size))
        width = -(-size // rows)
        self.size = size
        self._keys = [np.uint64(k) for k in keys]
        #: Round i reduces modulo a (even i) or b (odd i): the range of the part it rewrites.
        self._moduli = [np.uint64(rows if index % 2 == 0 else width) for index in range(len(keys))]
        self._width = np.uint64(width)

    @staticmethod
    def _round(part: np.ndarray, key: np.uint64, modulus: np.uint64) -> np.ndarray:
        """The round function, in ``[0, modulus)``: the high 32 bits of ``(part ^ key) * odd constant``
        (wrapping uint64 arithmetic) scaled into the range by a multiply-shift, no division (a
        uint64 ``%`` costs numpy about as much as the rest of a round together)."""
        mixed = part ^ key
        mixed *= _MULTIPLIER
        mixed >>= _SHIFT
        mixed *= modulus
        mixed >>= _SHIFT
        return mixed

    def _network(self, values: np.ndarray) -> np.ndarray:
        # In-place operations on fresh arrays: a page maps tens to thousands of positions, where
        # the cost is per numpy operation and allocation as much as per element.
        left, right = np.divmod(values, self._width)
        for key, modulus in zip(self._keys, self._moduli):
            mixed = self._round(right, key, modulus)
            mixed += left  # both below the modulus: one subtraction reduces the sum
            mixed -= modulus * (mixed >= modulus)
            left, right = right, mixed
        left *= self._width
        left += right
        return left

    def __call__(self, positions) -> np.ndarray:
        """Map positions (array-like of ints in ``range(size)``) to their images, as int64."""
        return self._walk(positions, self._network)

    def inverse(self, images) -> np.ndarray:
        """The positions whose images are ``images`` (array-like of ints in ``range(size)``), as int64."""
        return self._walk(images, self._network_inverse)

    def _network_inverse(self, values: np.ndarray) -> np.ndarray:
        # Each round undone: (L, R) came from (R_prev, L_prev) with L = R_prev and
        # R = (L_prev + F(R_prev)) mod m, so R_prev = L and L_prev = (R - F(L)) mod m.
        left, right = np.divmod(values, self._width)
        for key, modulus in zip(reversed(self._keys), reversed(self._moduli)):
            previous = right + modulus
            previous -= self._round(left, key, modulus)
            previous -= modulus * (previous >= modulus)
            left, right = previous, left
        left *= self._width
        left += right
        return left

    def _walk(self, values, network) -> np.ndarray:
        """``network`` (either way) with cycle-walking: values landing outside ``range(size)`` go
        through again until inside."""
        values = np.asarray(values, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() >= self.size):
            raise ValueError("value outside the permutation's domain")
        size = np.uint64(self.size)
        out = network(values.astype(np.uint64))
        outside = np.nonzero(out >= size)[0]
        while outside.size:
            out[outside] = network(out[outside])
            outside = outside[out[outside] >= size]
        return out.astype(np.int64)

"""The arithmetic under secure aggregation (:mod:`fedhub.fl.secagg`), with no keys and no I/O.

* :class:`FixedPoint`: the fixed-point quantiser that turns a float update, clipped to
  ``±clip_range``, into words of Z_{2^bits} whose sum over the members never wraps around,
  and back (:class:`fedhub.fl.secagg.SecAggConfig` is one).
* Shamir secret sharing of ≤32-byte secrets over the field of the Mersenne prime 2^521 - 1
  (:func:`shamir_split`, :func:`shamir_combine`).
* The errors secure aggregation raises (:mod:`fedhub.fl.secagg` exports them).
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from fedhub.errors import Conflict, InvalidRequest

# Shamir's field: the Mersenne prime 2^521 - 1, far above any 32-byte secret. Rebuilt
# secrets are checked against what the member published (its mask public key, a SHA-256
# commitment to its self-mask seed), so a wrong share is caught even among exactly t.
PRIME = 2**521 - 1
_SECRET_BITS = 256


class SecAggConfigError(InvalidRequest, code="invalid_secure_aggregation_settings"):
    """A secure-aggregation setting is out of range (the message names it)."""


class SecAggError(Conflict, code="secure_aggregation_failed"):
    """A round of secure aggregation cannot go on."""


class TooFewSurvivors(SecAggError, code="secure_aggregation_too_few_members"):
    """Fewer than ``threshold`` members are left: the sum cannot (and must not) be unmasked."""


class SecAggIntegrityError(SecAggError, code="secure_aggregation_integrity"):
    """A message, share or key failed its check: tampered with, or meant for other keys."""


class FixedPoint:
    """The fixed-point quantiser; a mix-in for a settings class with ``bits`` (inputs live in
    Z_{2^bits}) and ``clip_range`` (each coordinate is clipped to ``±clip_range`` first)."""

    bits: int
    clip_range: float

    def scale(self, n_members: int) -> float:
        """Fixed-point scale: the sum of ``n_members`` inputs can never wrap around."""
        scale = math.floor((2 ** (self.bits - 1) - 1 - n_members) / (n_members * self.clip_range))
        if scale < 1:
            raise SecAggConfigError(
                f"secagg bits={self.bits} cannot hold {n_members} inputs of range "
                f"±{self.clip_range:g}: raise bits or lower clip_range"
            )
        return float(scale)

    def error_bound(self, n_members: int, n_survivors: int) -> float:
        """Largest error per coordinate of the unmasked sum of ``n_survivors`` inputs.

        Each input rounds to the nearest multiple of ``1/scale`` (≤ half a step, plus the
        float64 error of the product, ≤ 2^(bits-53) steps); the final division adds
        float64 rounding of the sum. Inputs beyond ``±clip_range`` are clipped first: the
        bound is against the sum of the clipped inputs.
        """
        scale = self.scale(n_members)
        per_input = (0.5 + 2.0 ** (self.bits - 53)) / scale
        return n_survivors * per_input + n_survivors * self.clip_range * 2.0**-52

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    def quantise(self, update: np.ndarray, n_members: int) -> np.ndarray:
        """``update`` clipped to ``±clip_range`` as fixed point in Z_{2^bits} (uint64)."""
        vec = np.asarray(update, dtype=np.float64)
        fixed = np.rint(np.clip(vec, -self.clip_range, self.clip_range) * self.scale(n_members))
        return fixed.astype(np.int64).astype(np.uint64) & np.uint64(self.modulus - 1)

    def dequantise(self, total: np.ndarray, n_members: int) -> np.ndarray:
        """The float sum a Z_{2^bits} sum of quantised inputs stands for."""
        signed = (np.asarray(total, dtype=np.uint64) & np.uint64(self.modulus - 1)).astype(np.int64)
        signed = np.where(signed >= self.modulus // 2, signed - self.modulus, signed)
        return signed.astype(np.float64) / self.scale(n_members)


# ------------------------------------------------------------------ Shamir


def _eval_poly(coefficients: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % PRIME
    return acc


def shamir_split(secret: bytes, xs: list[int], threshold: int) -> dict[int, int]:
    """Shares ``(x, f(x))`` of a ≤32-byte secret: any ``threshold`` of them rebuild it."""
    if len(secret) > _SECRET_BITS // 8:
        raise ValueError("Shamir secrets here are at most 32 bytes")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {x: _eval_poly(coefficients, x) for x in xs}


def _lagrange_at(points: list[tuple[int, int]], x: int) -> int:
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (x - xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, -1, PRIME)) % PRIME
    return total


def shamir_combine(shares: dict[int, int], threshold: int, what: str) -> bytes:
    """The 32-byte secret behind ``shares`` (x -> y); checks every share beyond ``threshold``.

    Raises :class:`TooFewSurvivors` with fewer than ``threshold`` shares and
    :class:`SecAggIntegrityError` when the shares do not lie on one polynomial of a 32-byte
    secret (a share was altered or came from another round).
    """
    if len(shares) < threshold:
        raise TooFewSurvivors(f"{len(shares)} share(s) of {what}, {threshold} needed to rebuild it")
    points = sorted((int(x), int(y)) for x, y in shares.items())
    if any(not 0 <= y < PRIME for _, y in points):
        raise SecAggIntegrityError(f"a share of {what} is outside the field")
    base = points[:threshold]
    for x, y in points[threshold:]:
        if _lagrange_at(base, x) != y:
            raise SecAggIntegrityError(f"the shares of {what} are inconsistent")
    secret = _lagrange_at(base, 0)
    if secret >= 1 << _SECRET_BITS:
        raise SecAggIntegrityError(f"the shares of {what} do not rebuild a valid secret")
    return secret.to_bytes(_SECRET_BITS // 8, "big")

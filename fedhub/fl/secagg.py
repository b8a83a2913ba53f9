"""Secure aggregation: the coordinator learns the sum of a round's updates, not one of them.

The protocol of Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning" (CCS 2017), as Flower's SecAgg+ runs it (Bell et al., "Secure
Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020) with the complete
graph: cross-silo federations have a handful of members, so every pair of members masks.
The coordinator relays every message; members never talk to each other directly.

Stages (one :class:`SecAggMember` per member and round, living on that member's worker):

0. ``advertise()``: two fresh X25519 key pairs, one to encrypt messages to peers (``c``)
   and one to agree pairwise masks (``s``); the public halves go to the coordinator, which
   sends the roster of everyone's public keys back to every member.
1. ``share_keys(roster)``: a random 32-byte self-mask seed ``b`` and the private ``s`` key
   are each Shamir-shared (threshold ``t``) among the roster; each peer's two shares are
   encrypted for it (X25519 + HKDF-SHA256 + ChaCha20-Poly1305) and handed to the
   coordinator to relay.
2. ``masked_input(update, shares_for_me)``: the update, clipped to ``±clip_range`` and
   quantised into Z_{2^bits}, plus ``PRG(b)``, plus ``PRG(s_ij)`` for every peer ``j`` that
   shared keys (added when ``i < j``, subtracted when ``i > j``, so pairs cancel in the sum).
   ``s_ij`` comes from X25519(s_i, s_j) through HKDF; the PRG is AES-256 in counter mode.
3. ``unmask(survivors, dropped)``: for each survivor, this member's share of its ``b``; for
   each member that shared keys but sent no input, this member's share of its ``s`` key.
   A member never answers for one peer both ways, and answers once per round.

:class:`SecAggServer` sums the masked inputs, rebuilds each survivor's ``b`` and each dropped
member's ``s`` key from ``t`` shares, removes those masks, and dequantises. It refuses with
:class:`TooFewSurvivors` when fewer than ``t`` members sent inputs or answered stage 3,
and with :class:`SecAggIntegrityError` when a share, a key or a message does not check out.

What the coordinator sees: public keys, ciphertexts it cannot open, masked inputs that
are uniformly distributed in Z_{2^bits} on their own and in any proper subset's sum, and
fewer than ``t`` shares of any one secret of each kind, and a SHA-256 commitment to each
self-mask seed (a 256-bit random value: the commitment does not reveal it). docs/fl.md ("Secure aggregation and
differential privacy") has the threat model and its limits. The quantiser, Shamir sharing
and the errors are in :mod:`fedhub.fl.secagg_math`.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .secagg_math import (
    FixedPoint,
    SecAggConfigError,
    SecAggError,
    SecAggIntegrityError,
    TooFewSurvivors,
    shamir_combine,
    shamir_split,
)

__all__ = [
    "PublicKeys",
    "SecAggConfig",
    "SecAggConfigError",
    "SecAggError",
    "SecAggIntegrityError",
    "SecAggMember",
    "SecAggServer",
    "TooFewSurvivors",
    "default_threshold",
]

_PROTOCOL = b"fedhub-secagg-v1"
_SHARE = struct.Struct(">QQ66s66s")  # sender, recipient, share of b, share of the s key


def default_threshold(n_members: int) -> int:
    """``ceil(2n/3)``, at least 2: the survivors needed to unmask a round of ``n`` members."""
    return max(2, math.ceil(2 * n_members / 3))


@dataclass(frozen=True)
class SecAggConfig(FixedPoint):
    """Settings shared by the coordinator and every member of a federation.

    ``threshold``: members whose shares are needed to unmask (and the fewest survivors a
    round may have); more than half the roster, at most all of it.
    ``clip_range``: each coordinate of an update is clipped to ``[-clip_range, clip_range]``
    before quantisation (with DP, choose it ≥ the clip norm and nothing is cut).
    ``bits``: inputs live in Z_{2^bits}; 16 to 40.
    """

    threshold: int
    clip_range: float = 8.0
    bits: int = 32

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise SecAggConfigError(f"secagg threshold must be an integer, got {self.threshold!r}")
        if self.threshold < 2:
            raise SecAggConfigError(
                f"secagg threshold must be at least 2, got {self.threshold} "
                "(with 1, any one member's share would be the secret itself)"
            )
        try:
            clip_range = float(self.clip_range)
        except (TypeError, ValueError):
            raise SecAggConfigError(
                f"secagg clip_range must be a number, got {self.clip_range!r}"
            ) from None
        if not math.isfinite(clip_range) or clip_range <= 0:
            raise SecAggConfigError(
                f"secagg clip_range must be positive and finite, got {self.clip_range!r}"
            )
        object.__setattr__(self, "clip_range", clip_range)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise SecAggConfigError(f"secagg bits must be an integer, got {self.bits!r}")
        if not 16 <= self.bits <= 40:
            raise SecAggConfigError(f"secagg bits must be between 16 and 40, got {self.bits}")

    def check_members(self, n_members: int) -> None:
        """Refuses a roster of ``n_members`` this threshold cannot protect."""
        if n_members < 2:
            raise SecAggConfigError(f"secure aggregation needs at least 2 members, got {n_members}")
        if self.threshold > n_members:
            raise SecAggConfigError(
                f"secagg threshold {self.threshold} is more than the {n_members} members"
            )
        if 2 * self.threshold <= n_members:
            raise SecAggConfigError(
                f"secagg threshold {self.threshold} must be more than half of the "
                f"{n_members} members (else two halves could each be unmasked; "
                f"the default is {default_threshold(n_members)})"
            )
        self.scale(n_members)


@dataclass(frozen=True)
class PublicKeys:
    """What a member advertises in stage 0: raw X25519 public keys."""

    member_id: int
    channel_key: bytes  # encrypts key shares to this member
    mask_key: bytes  # agrees pairwise masks with this member
    seed_commitment: bytes = b""  # SHA-256 of the self-mask seed: checks its rebuilt value


def _commit(seed: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_PROTOCOL + b"/seed-commitment/" + seed)
    return digest.finalize()


# ------------------------------------------------------------------ primitives


def _hkdf(secret: bytes, purpose: bytes, a: int, b: int) -> bytes:
    lo, hi = sorted((a, b))
    info = _PROTOCOL + b"/" + purpose + struct.pack(">QQ", lo, hi)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _agree(private: X25519PrivateKey, public: bytes, purpose: bytes, me: int, peer: int) -> bytes:
    """A 32-byte key for the pair ``me``/``peer`` (``public`` is ``peer``'s), for ``purpose``."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise SecAggIntegrityError(
            f"the public key of member {peer} is not a valid X25519 key"
        ) from None
    return _hkdf(shared, purpose, me, peer)


def _prg(seed: bytes, dim: int) -> np.ndarray:
    """``dim`` pseudo-random uint64 words (read-only): AES-256-CTR keystream under ``seed``."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(encryptor.update(bytes(8 * dim)), dtype="<u8")


def _x(member_id: int) -> int:
    return member_id + 1  # Shamir's x-coordinate: never 0 (f(0) is the secret)


def _check_ids(ids, what: str) -> list[int]:
    out = []
    for mid in ids:
        if isinstance(mid, bool) or not isinstance(mid, int | np.integer) or mid < 0:
            raise SecAggConfigError(f"{what}: member ids are non-negative integers, got {mid!r}")
        out.append(int(mid))
    if len(set(out)) != len(out):
        raise SecAggConfigError(f"{what}: a member id appears twice")
    return out


# ------------------------------------------------------------------ member


class SecAggMember:
    """One member's side of one round. Its secrets stay in this object, on its worker.

    The object cannot be pickled (its private keys refuse), so it cannot be shipped off
    the worker by mistake; the coordinator gets only what the stage methods return.
    ``rng_seed`` is accepted for the agreed interface and never used: keys, seeds and
    Shamir coefficients always come from the operating system's CSPRNG, because anyone
    who knew a seed could unmask the member's input.
    """

    def __init__(self, member_id: int, config: SecAggConfig, rng_seed: int | None = None):
        (self.member_id,) = _check_ids([member_id], "member")
        self.config = config
        self._channel = X25519PrivateKey.generate()
        self._mask = X25519PrivateKey.generate()
        self._stage = 0
        self._roster: dict[int, PublicKeys] = {}
        self._seed = os.urandom(32)
        self._my_seed_share = 0
        self._my_key_share = 0
        self._seed_shares: dict[int, int] = {}
        self._key_shares: dict[int, int] = {}
        self._masked_with: set[int] = set()

    def _enter(self, stage: int, name: str) -> None:
        if self._stage != stage:
            raise SecAggError(
                f"member {self.member_id}: {name} is stage {stage} of secure aggregation, "
                f"and this member is at stage {self._stage}"
            )
        self._stage = stage + 1

    def _public(self) -> PublicKeys:
        return PublicKeys(
            self.member_id,
            self._channel.public_key().public_bytes_raw(),
            self._mask.public_key().public_bytes_raw(),
            _commit(self._seed),
        )

    def advertise(self) -> PublicKeys:
        """Stage 0: this round's public keys."""
        self._enter(0, "advertise")
        return self._public()

    def share_keys(self, roster: dict[int, PublicKeys]) -> dict[int, bytes]:
        """Stage 1: encrypted Shamir shares of this member's secrets, one per peer."""
        self._enter(1, "share_keys")
        ids = _check_ids(roster, "roster")
        for mid in ids:
            if not isinstance(roster[mid], PublicKeys) or roster[mid].member_id != mid:
                raise SecAggIntegrityError(f"the roster's entry for member {mid} is not its keys")
        if roster.get(self.member_id) != self._public():
            raise SecAggIntegrityError(
                f"the roster does not hold member {self.member_id}'s own public keys"
            )
        self.config.check_members(len(ids))
        self._roster = dict(roster)
        xs = [_x(mid) for mid in ids]
        seed_shares = shamir_split(self._seed, xs, self.config.threshold)
        key_shares = shamir_split(self._mask.private_bytes_raw(), xs, self.config.threshold)
        me = _x(self.member_id)
        self._my_seed_share, self._my_key_share = seed_shares[me], key_shares[me]
        out = {}
        for peer in ids:
            if peer == self.member_id:
                continue
            key = _agree(self._channel, roster[peer].channel_key, b"channel", self.member_id, peer)
            plain = _SHARE.pack(
                self.member_id,
                peer,
                seed_shares[_x(peer)].to_bytes(66, "big"),
                key_shares[_x(peer)].to_bytes(66, "big"),
            )
            nonce = os.urandom(12)
            aad = _PROTOCOL + struct.pack(">QQ", self.member_id, peer)
            out[peer] = nonce + ChaCha20Poly1305(key).encrypt(nonce, plain, aad)
        return out

    def _open(self, sender: int, box: bytes) -> tuple[int, int]:
        if sender not in self._roster or sender == self.member_id:
            raise SecAggIntegrityError(f"key shares from member {sender}, who is not a peer")
        public = self._roster[sender].channel_key
        key = _agree(self._channel, public, b"channel", self.member_id, sender)
        aad = _PROTOCOL + struct.pack(">QQ", sender, self.member_id)
        try:
            plain = ChaCha20Poly1305(key).decrypt(bytes(box[:12]), bytes(box[12:]), aad)
            src, dst, seed_share, key_share = _SHARE.unpack(plain)
        except (InvalidTag, ValueError, struct.error, TypeError):
            raise SecAggIntegrityError(
                f"the key shares from member {sender} to member {self.member_id} failed "
                "authentication (altered, or encrypted for other keys)"
            ) from None
        if (src, dst) != (sender, self.member_id):
            raise SecAggIntegrityError(f"the key shares from member {sender} are misaddressed")
        return int.from_bytes(seed_share, "big"), int.from_bytes(key_share, "big")

    def masked_input(self, update: np.ndarray, shares_for_me: dict[int, bytes]) -> np.ndarray:
        """Stage 2: the quantised update plus masks (uint64 words in Z_{2^bits}).

        ``shares_for_me`` holds the encrypted shares each peer that finished stage 1 sent
        this member; exactly those peers get pairwise masks.
        """
        self._enter(2, "masked_input")
        vec = np.asarray(update, dtype=np.float64)
        if vec.ndim != 1 or vec.size == 0:
            raise ValueError("the update must be a non-empty 1-D array")
        if not np.all(np.isfinite(vec)):
            raise ValueError("the update holds NaN or infinite values")
        for sender, box in shares_for_me.items():
            self._seed_shares[sender], self._key_shares[sender] = self._open(sender, box)
        self._seed_shares[self.member_id] = self._my_seed_share
        self._key_shares[self.member_id] = self._my_key_share
        self._masked_with = set(shares_for_me)
        if len(self._masked_with) + 1 < self.config.threshold:
            raise TooFewSurvivors(
                f"only {len(self._masked_with) + 1} member(s) shared keys, "
                f"threshold {self.config.threshold}"
            )
        total = self.config.quantise(vec, len(self._roster))
        total += _prg(self._seed, vec.size)  # uint64 arithmetic wraps mod 2^64
        for peer in sorted(self._masked_with):
            seed = _agree(self._mask, self._roster[peer].mask_key, b"mask", self.member_id, peer)
            if self.member_id < peer:
                total += _prg(seed, vec.size)
            else:
                total -= _prg(seed, vec.size)
        total &= np.uint64(self.config.modulus - 1)
        return total

    def unmask(self, survivors: list[int], dropped: list[int]) -> dict:
        """Stage 3: shares of survivors' self-mask seeds and of dropped members' mask keys.

        Refuses when the coordinator's lists do not split exactly the members this member
        masked with (itself included), when one member is named both ways, or when fewer
        than ``threshold`` survive: any of those could let it unmask a single input.
        """
        self._enter(3, "unmask")
        survivors_ = set(_check_ids(survivors, "survivors"))
        dropped_ = set(_check_ids(dropped, "dropped"))
        if survivors_ & dropped_:
            raise SecAggIntegrityError(
                f"member(s) {sorted(survivors_ & dropped_)} named both survivor and dropped"
            )
        if self.member_id not in survivors_:
            raise SecAggIntegrityError(f"member {self.member_id} is not among the survivors")
        if survivors_ | dropped_ != self._masked_with | {self.member_id}:
            raise SecAggIntegrityError(
                "the survivors and dropped members are not the members this member masked with"
            )
        if len(survivors_) < self.config.threshold:
            raise TooFewSurvivors(
                f"{len(survivors_)} survivor(s), threshold {self.config.threshold}: "
                "member refuses to help unmask"
            )
        return {
            "member": self.member_id,
            "n_members": len(self._roster),
            "survivors": sorted(survivors_),
            "dropped": sorted(dropped_),
            "mask_keys": {m: self._roster[m].mask_key for m in sorted(survivors_ | dropped_)},
            "seed_commitments": {m: self._roster[m].seed_commitment for m in sorted(survivors_)},
            "seed_shares": {m: self._seed_shares[m] for m in sorted(survivors_)},
            "key_shares": {m: self._key_shares[m] for m in sorted(dropped_)},
        }

    def __reduce__(self):
        raise TypeError("a SecAggMember holds secrets and stays on its worker")


# ------------------------------------------------------------------ server


class SecAggServer:
    """The coordinator's side: the float sum of the survivors' updates, and nothing else.

    ``member_ids`` are the members that may be in the sum (those that shared keys);
    ``dim`` is the length of the update vectors.
    """

    def __init__(self, config: SecAggConfig, member_ids: list[int], dim: int):
        self.config = config
        self.member_ids = _check_ids(member_ids, "members")
        if len(self.member_ids) < config.threshold:
            raise TooFewSurvivors(_too_few(len(self.member_ids), config.threshold, "shared keys"))
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise SecAggConfigError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim

    def aggregate(
        self, masked: dict[int, np.ndarray], unmask_responses: dict[int, dict]
    ) -> np.ndarray:
        """Sum of the survivors' (clipped) updates, float64, within ``config.error_bound``."""
        t = self.config.threshold
        survivors = sorted(_check_ids(masked, "masked inputs"))
        if len(survivors) < t:
            raise TooFewSurvivors(_too_few(len(survivors), t, "sent masked inputs"))
        if not set(survivors) <= set(self.member_ids):
            raise SecAggIntegrityError("masked input from a member that did not share keys")
        answered = [mid for mid in unmask_responses if mid in masked]
        if len(answered) < t:
            raise TooFewSurvivors(_too_few(len(answered), t, "answered the unmasking request"))
        responses = [unmask_responses[mid] for mid in sorted(answered)]
        view = _agreed_view(responses, answered)
        if view["survivors"] != survivors:
            raise SecAggIntegrityError(
                "the members' survivor lists differ from the inputs received"
            )
        dropped = view["dropped"]
        if not set(dropped) <= set(self.member_ids):
            raise SecAggIntegrityError("a dropped member was never among the members")
        n_members = view["n_members"]
        self.config.check_members(n_members)
        mod_mask = np.uint64(self.config.modulus - 1)

        total = np.zeros(self.dim, dtype=np.uint64)
        for mid in survivors:
            vec = np.asarray(masked[mid])
            if vec.dtype != np.uint64 or vec.shape != (self.dim,):
                raise SecAggIntegrityError(
                    f"member {mid}'s masked input is not {self.dim} uint64 words"
                )
            if np.any(vec > mod_mask):
                raise SecAggIntegrityError(f"member {mid}'s masked input is outside Z_2^bits")
            total += vec
        for mid in survivors:
            shares = {_x(r["member"]): r["seed_shares"][mid] for r in responses}
            seed = shamir_combine(shares, t, f"member {mid}'s self-mask seed")
            if _commit(seed) != view["seed_commitments"][mid]:
                raise SecAggIntegrityError(f"member {mid}'s rebuilt self-mask seed does not match")
            total -= _prg(seed, self.dim)
        for gone in dropped:
            shares = {_x(r["member"]): r["key_shares"][gone] for r in responses}
            raw = shamir_combine(shares, t, f"member {gone}'s mask key")
            private = X25519PrivateKey.from_private_bytes(raw)
            if private.public_key().public_bytes_raw() != view["mask_keys"][gone]:
                raise SecAggIntegrityError(f"member {gone}'s rebuilt mask key does not match")
            for mid in survivors:
                seed = _agree(private, view["mask_keys"][mid], b"mask", gone, mid)
                # survivor mid added PRG(seed) when mid < gone, subtracted it otherwise
                if mid < gone:
                    total -= _prg(seed, self.dim)
                else:
                    total += _prg(seed, self.dim)
        return self.config.dequantise(total & mod_mask, n_members)


def _too_few(count: int, threshold: int, what: str) -> str:
    msg = (
        f"only {count} member(s) {what}, and secure aggregation needs {threshold}: "
        "the round's sum cannot be unmasked (a sum of fewer members could expose an update)"
    )
    if threshold == 2:
        msg += "; with 2 members no dropout can be recovered"
    return msg


def _agreed_view(responses: list[dict], answered: list[int]) -> dict:
    """The round as every answering member saw it; they must all agree."""
    keys = ("n_members", "survivors", "dropped", "mask_keys", "seed_commitments")
    try:
        views = [{k: r[k] for k in keys} for r in responses]
        for mid, r in zip(sorted(answered), responses, strict=True):
            if r["member"] != mid:
                raise SecAggIntegrityError(f"the unmasking answer filed under {mid} is another's")
            if set(r["seed_shares"]) != set(r["survivors"]) or set(r["key_shares"]) != set(
                r["dropped"]
            ):
                raise SecAggIntegrityError(f"member {mid}'s unmasking answer is incomplete")
    except (KeyError, TypeError):
        raise SecAggIntegrityError("an unmasking answer is malformed") from None
    if any(v != views[0] for v in views[1:]):
        raise SecAggIntegrityError("the members disagree on who survived the round")
    view = dict(views[0])
    view["survivors"] = sorted(view["survivors"])
    view["dropped"] = sorted(view["dropped"])
    return view

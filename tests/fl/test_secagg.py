"""fedhub.fl.secagg: the coordinator gets the sum, not the updates (issue #18, must-show 3).

Every stage runs for real (X25519, HKDF, ChaCha20-Poly1305, AES-CTR masks, Shamir over
2^521 - 1); the "coordinator" here is the test relaying messages, as the federation runner
does. Fast and hub-free.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import stats

from fedhub.fl.secagg import (
    PublicKeys,
    SecAggConfig,
    SecAggConfigError,
    SecAggError,
    SecAggIntegrityError,
    SecAggMember,
    SecAggServer,
    TooFewSurvivors,
    default_threshold,
)
from fedhub.fl.secagg_math import _lagrange_at, shamir_combine, shamir_split

DIM = 4096


class Round:
    """One round's members and the relaying coordinator, stage by stage."""

    def __init__(self, config: SecAggConfig, ids: list[int]):
        self.config = config
        self.members = {mid: SecAggMember(mid, config) for mid in ids}
        self.roster = {mid: m.advertise() for mid, m in self.members.items()}

    def share(self, ids=None) -> dict[int, dict[int, bytes]]:
        ids = self.roster if ids is None else ids
        self.sent = {mid: self.members[mid].share_keys(self.roster) for mid in ids}
        self.u1 = sorted(self.sent)
        return self.sent

    def inbox(self, mid: int) -> dict[int, bytes]:
        return {src: self.sent[src][mid] for src in self.u1 if src != mid}

    def mask(self, updates: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        self.masked = {
            mid: self.members[mid].masked_input(updates[mid], self.inbox(mid)) for mid in updates
        }
        return self.masked

    def unmask(self) -> dict[int, dict]:
        survivors = sorted(self.masked)
        dropped = [mid for mid in self.u1 if mid not in self.masked]
        return {mid: self.members[mid].unmask(survivors, dropped) for mid in survivors}

    def server(self) -> SecAggServer:
        return SecAggServer(self.config, self.u1, DIM)


def _updates(ids, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {mid: rng.normal(0, scale, DIM) for mid in ids}


def _run(config, ids, updates, *, drop=()):
    r = Round(config, ids)
    r.share()
    r.mask({mid: updates[mid] for mid in ids if mid not in drop})
    return r.server().aggregate(r.masked, r.unmask()), r


@pytest.mark.parametrize(("n", "bits"), [(2, 32), (3, 32), (5, 24), (10, 40)])
def test_unmasked_sum_equals_plain_sum_within_the_quantisation_bound(n, bits):
    ids = [3 * i + 1 for i in range(n)]  # ids need not be 0..n-1
    config = SecAggConfig(threshold=default_threshold(n), bits=bits)
    updates = _updates(ids, seed=n)
    total, _ = _run(config, ids, updates)
    plain = sum(updates.values())
    bound = config.error_bound(n, n)
    err = np.max(np.abs(total - plain))
    assert err <= bound
    # the bound is the real rounding scale, not a loose tolerance: half a step per input
    assert bound < n / config.scale(n)
    assert err > bound / 100


def test_values_beyond_the_clip_range_are_clipped_before_summing():
    config = SecAggConfig(threshold=2, clip_range=1.0)
    updates = {0: np.full(DIM, 3.0), 1: np.full(DIM, -0.25)}
    total, _ = _run(config, [0, 1], updates)
    np.testing.assert_allclose(total, 0.75, atol=config.error_bound(2, 2))


def test_the_coordinators_inputs_are_masked():
    n, ids = 3, [0, 1, 2]
    config = SecAggConfig(threshold=2)
    # a very recognisable update: a ramp with a large offset, and an all-zero one
    updates = {0: np.linspace(-4, 4, DIM), 1: np.zeros(DIM), 2: np.full(DIM, 2.5)}
    total, r = _run(config, ids, updates)
    np.testing.assert_allclose(total, sum(updates.values()), atol=config.error_bound(n, n))
    modulus = float(config.modulus)
    for mid, vec in r.masked.items():
        assert vec.dtype == np.uint64 and vec.shape == (DIM,)
        # uniform on Z_2^bits ...
        assert stats.kstest(vec.astype(np.float64) / modulus, "uniform").pvalue > 1e-3
        # ... uncorrelated with the update it hides, and no reading of it gives the update back
        reading = config.dequantise(vec, n)
        if np.std(updates[mid]) > 0:
            assert abs(np.corrcoef(reading, updates[mid])[0, 1]) < 5 / math.sqrt(DIM)
        assert np.median(np.abs(reading - updates[mid])) > 0.1 * config.clip_range
    # the pairwise masks cancel only over the whole set: a pair's sum is still uniform
    pair = (r.masked[0] + r.masked[1]) & np.uint64(config.modulus - 1)
    assert stats.kstest(pair.astype(np.float64) / modulus, "uniform").pvalue > 1e-3
    # the same update masked twice looks different both times (fresh keys and seeds)
    again, r2 = _run(config, ids, updates)
    assert np.mean(r2.masked[1] == r.masked[1]) < 0.01
    np.testing.assert_allclose(again, total, atol=2 * config.error_bound(n, n))


def test_the_test_can_tell_an_unmasked_input():
    """The uniformity check above is not vacuous: a quantised update without masks fails it."""
    config = SecAggConfig(threshold=2)
    plain = config.quantise(np.random.default_rng(1).normal(size=DIM), 3)
    assert stats.kstest(plain.astype(np.float64) / config.modulus, "uniform").pvalue < 1e-6


def test_members_refuse_to_hand_over_one_update():
    """A coordinator asking for a member's self seed *and* its mask key gets neither."""
    config = SecAggConfig(threshold=2)
    r = Round(config, [0, 1, 2])
    r.share()
    r.mask(_updates([0, 1, 2]))
    with pytest.raises(SecAggIntegrityError, match="named both survivor and dropped"):
        r.members[1].unmask([0, 1, 2], [2])
    # a member answers once per round: no second try with another split
    with pytest.raises(SecAggError, match="stage 3"):
        r.members[1].unmask([0, 1], [2])
    # a split that is not the set it masked with is refused
    with pytest.raises(SecAggIntegrityError, match="not the members this member masked with"):
        r.members[0].unmask([0, 1], [])
    # and its secrets cannot leave the worker by being pickled
    with pytest.raises(TypeError, match="stays on its worker"):
        pickle.dumps(r.members[2])


@pytest.mark.parametrize(("n", "drop"), [(3, (1,)), (6, (0, 5)), (10, (2, 5, 9))])
def test_a_member_dropping_after_sharing_keys_is_recovered_from_the_shares(n, drop):
    ids = list(range(n))
    config = SecAggConfig(threshold=default_threshold(n))
    updates = _updates(ids, seed=10 + n)
    total, r = _run(config, ids, updates, drop=drop)
    survivors = [mid for mid in ids if mid not in drop]
    plain = sum(updates[mid] for mid in survivors)
    assert np.max(np.abs(total - plain)) <= config.error_bound(n, len(survivors))
    # the dropped members' masks were in the survivors' inputs: without unmasking them the
    # sum is noise
    naive = config.dequantise(sum(r.masked.values()), n)
    assert np.max(np.abs(naive - plain)) > 1.0


def test_a_member_dropping_before_sharing_keys_is_left_out_of_every_mask():
    config = SecAggConfig(threshold=3)
    updates = _updates(range(4), seed=5)
    r = Round(config, [0, 1, 2, 3])
    r.share(ids=[0, 1, 3])  # member 2 advertised keys, then went silent
    r.mask({mid: updates[mid] for mid in (0, 1, 3)})
    total = r.server().aggregate(r.masked, r.unmask())
    plain = updates[0] + updates[1] + updates[3]
    assert np.max(np.abs(total - plain)) <= config.error_bound(4, 3)


def test_too_many_dropouts_refuse_with_a_clear_error():
    config = SecAggConfig(threshold=4)
    r = Round(config, list(range(5)))
    r.share()
    updates = _updates(range(5))
    r.mask({mid: updates[mid] for mid in (0, 1, 2)})  # 2 of 5 dropped: 3 < threshold 4
    with pytest.raises(TooFewSurvivors, match="3 survivor"):
        r.members[0].unmask([0, 1, 2], [3, 4])
    fake = {mid: {"member": mid} for mid in (0, 1, 2)}
    with pytest.raises(TooFewSurvivors, match="only 3 member.* sent masked inputs.* needs 4"):
        r.server().aggregate(r.masked, fake)
    # enough inputs, but too few answers to the unmasking request
    r = Round(config, list(range(5)))
    r.share()
    r.mask(_updates(range(5)))
    answers = r.unmask()
    partial = {mid: answers[mid] for mid in (0, 1, 2)}
    with pytest.raises(TooFewSurvivors, match="3 member.* answered the unmasking request") as e:
        r.server().aggregate(r.masked, partial)
    assert e.value.status == 409 and e.value.code == "secure_aggregation_too_few_members"


def test_two_members_cannot_recover_a_dropout():
    config = SecAggConfig(threshold=2)
    r = Round(config, [0, 1])
    r.share()
    r.mask({0: np.ones(DIM)})
    with pytest.raises(TooFewSurvivors, match="with 2 members no dropout can be recovered"):
        r.server().aggregate(r.masked, {0: {"member": 0}})
    with pytest.raises(TooFewSurvivors):
        r.members[0].unmask([0], [1])
    # a threshold below 2 is refused outright (one share would be the secret)
    with pytest.raises(SecAggConfigError, match="at least 2"):
        SecAggConfig(threshold=1)


def test_a_tampered_share_fails_loudly():
    config = SecAggConfig(threshold=2)
    r = Round(config, [0, 1, 2])
    r.share()
    box = bytearray(r.sent[0][1])
    box[40] ^= 0x01
    r.sent[0][1] = bytes(box)
    with pytest.raises(SecAggIntegrityError, match="from member 0 to member 1 failed auth"):
        r.members[1].masked_input(np.zeros(DIM), r.inbox(1))
    # a share relayed to the wrong recipient fails too
    r = Round(config, [0, 1, 2])
    r.share()
    with pytest.raises(SecAggIntegrityError, match="failed authentication"):
        r.members[2].masked_input(np.zeros(DIM), {0: r.sent[0][1], 1: r.sent[1][2]})


def test_wrong_keys_fail_loudly():
    config = SecAggConfig(threshold=2)
    impostor = SecAggMember(2, config).advertise()
    # a roster without the member's own keys is refused
    r = Round(config, [0, 1, 2])
    with pytest.raises(SecAggIntegrityError, match="own public keys"):
        r.members[2].share_keys({**r.roster, 2: impostor})
    # an invalid public key (all zeros, a low-order point) is refused
    r = Round(config, [0, 1, 2])
    with pytest.raises(SecAggIntegrityError, match="not a valid X25519 key"):
        r.members[0].share_keys({**r.roster, 1: PublicKeys(1, bytes(32), bytes(32))})
    # a roster entry filed under another member's id
    r = Round(config, [0, 1, 2])
    with pytest.raises(SecAggIntegrityError, match="entry for member 1"):
        r.members[0].share_keys({**r.roster, 1: r.roster[2]})


def test_the_impostors_shares_do_not_open():
    """Shares encrypted under the real member 0's keys cannot be opened with an impostor's."""
    config = SecAggConfig(threshold=2)
    r = Round(config, [0, 1, 2])
    impostor = SecAggMember(0, config).advertise()
    sent = {mid: r.members[mid].share_keys(r.roster) for mid in (0, 2)}
    r.members[1].share_keys({**r.roster, 0: impostor})
    with pytest.raises(SecAggIntegrityError, match="from member 0 to member 1 failed auth"):
        r.members[1].masked_input(np.zeros(DIM), {0: sent[0][1], 2: sent[2][1]})


def test_tampered_unmasking_answers_fail_loudly():
    config = SecAggConfig(threshold=3)
    ids = list(range(5))
    updates = _updates(ids)

    def answers(drop=()):
        r = Round(config, ids)
        r.share()
        r.mask({mid: updates[mid] for mid in ids if mid not in drop})
        return r, r.unmask()

    # an altered self-seed share: caught with exactly t shares (the seed commitment) ...
    r, a = answers()
    a[0]["seed_shares"][3] += 1
    three = {mid: a[mid] for mid in (0, 1, 2)}
    with pytest.raises(SecAggIntegrityError, match="member 3's (rebuilt )?self-mask seed"):
        r.server().aggregate(r.masked, three)
    # ... and with more than t (off the polynomial of the others)
    with pytest.raises(SecAggIntegrityError, match="member 3's (rebuilt )?self-mask seed"):
        r.server().aggregate(r.masked, a)
    # an altered share of a dropped member's mask key
    r, a = answers(drop=(4,))
    a[1]["key_shares"][4] = (a[1]["key_shares"][4] * 7) % (2**521 - 1)
    with pytest.raises(SecAggIntegrityError, match="member 4's mask key"):
        r.server().aggregate(r.masked, a)
    # members that disagree on who survived
    r, a = answers(drop=(4,))
    a[2]["survivors"] = [0, 1, 2]
    with pytest.raises(SecAggIntegrityError):
        r.server().aggregate(r.masked, a)
    # a masked input of the wrong shape or type
    r, a = answers()
    r.masked[1] = r.masked[1][:-1]
    with pytest.raises(SecAggIntegrityError, match="not 4096 uint64 words"):
        r.server().aggregate(r.masked, a)


def test_stages_run_in_order():
    config = SecAggConfig(threshold=2)
    m = SecAggMember(0, config)
    with pytest.raises(SecAggError, match="stage 2"):
        m.masked_input(np.zeros(3), {})
    m.advertise()
    with pytest.raises(SecAggError, match="stage 0"):
        m.advertise()


@pytest.mark.parametrize(
    ("kwargs", "n", "message"),
    [
        ({"threshold": 2.5}, None, "threshold must be an integer"),
        ({"threshold": 2, "bits": 64}, None, "bits must be between 16 and 40"),
        ({"threshold": 2, "clip_range": float("inf")}, None, "clip_range must be positive"),
        ({"threshold": 2}, 1, "at least 2 members"),
        ({"threshold": 4}, 3, "more than the 3 members"),
        ({"threshold": 2}, 4, "more than half of the 4 members"),
        ({"threshold": 300, "bits": 16, "clip_range": 100.0}, 400, "cannot hold 400 inputs"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, n, message):
    with pytest.raises(SecAggConfigError, match=message) as e:
        SecAggConfig(**kwargs).check_members(n)
    assert e.value.status == 400


def test_shamir_any_threshold_shares_rebuild_the_secret():
    secret = bytes(range(32))
    shares = shamir_split(secret, [1, 2, 3, 4, 5], 3)
    for subset in ([1, 2, 3], [2, 4, 5], [1, 3, 5], [1, 2, 3, 4, 5]):
        assert shamir_combine({x: shares[x] for x in subset}, 3, "s") == secret
    with pytest.raises(TooFewSurvivors):
        shamir_combine({1: shares[1], 2: shares[2]}, 3, "s")
    # two shares of a threshold-3 sharing say nothing: for any secret at all there is a
    # third share that completes them to a sharing of it
    other = b"\xff" * 32
    points = [(0, int.from_bytes(other, "big")), (1, shares[1]), (2, shares[2])]
    third = _lagrange_at(points, 3)
    assert shamir_combine({1: shares[1], 2: shares[2], 3: third}, 3, "s") == other

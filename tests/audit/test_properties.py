"""Must-show 2: any single modification, deletion, insertion, reordering or
truncation of stored records is detected by ``verify``; an untouched log verifies.

A change to what the hash covers (the stored canonical bytes), to the chain's
links or to the MAC fails the default verify; a change to a column that is only
there to filter on fails ``verify --deep``, and reads still show the record as
it was hashed (they render it from the bytes).

A pristine log (one chain of N records, signed checkpoints in the middle and at
the head) is built once; every example copies it, tampers with the copy the
way a database owner could (raw SQL), and verifies the copy.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedhub import db as fedhub_db
from fedhub.audit import AuditLog, crypto
from fedhub.audit.query import EventFilter, iter_events
from fedhub.audit.records import record_canonical, record_hash
from fedhub.audit.verify import verify
from tests.audit.conftest import sample_events

N = 24
SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("pristine")
    url = f"sqlite:///{base / 'db.sqlite'}"
    fedhub_db.upgrade(url)
    audit = AuditLog(db_url=url, audit_dir=str(base / "audit"))
    evs = sample_events(N, tenants=("acme",))
    audit.append(evs[:10])
    audit.checkpoint("acme")
    audit.append(evs[10:])
    audit.checkpoint("acme")
    audit.append(sample_events(5, tenants=("globex",)))
    fedhub_db.dispose_engines()  # merge the WAL into the file before copying
    return base


class Copy:
    """A copy of the pristine log, with raw SQL access like a database owner's."""

    def __init__(self, pristine: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="audit-prop-"))
        shutil.copy(pristine / "db.sqlite", self.dir / "db.sqlite")
        shutil.copytree(pristine / "audit", self.dir / "audit")
        self.sql = sqlite3.connect(self.dir / "db.sqlite", isolation_level=None)
        self.sql.row_factory = sqlite3.Row
        self.audit = AuditLog(
            db_url=f"sqlite:///{self.dir / 'db.sqlite'}", audit_dir=str(self.dir / "audit")
        )

    def rows(self, tenant="acme"):
        return [
            dict(r)
            for r in self.sql.execute(
                "SELECT * FROM fedhub_audit_records WHERE tenant=? ORDER BY seq", (tenant,)
            )
        ]

    def verify(self, tenant="acme", *, deep=False):
        self.sql.close()
        try:
            [fast] = verify(self.audit, tenant)
            [thorough] = verify(self.audit, tenant, deep=True)
            return thorough if deep else fast
        finally:
            fedhub_db.dispose_engines()
            shutil.rmtree(self.dir, ignore_errors=True)

    def events(self, **filters):
        return iter_events(self.audit, EventFilter(**filters))


def _flip(hexstr: str) -> str:
    return ("1" if hexstr[0] != "1" else "2") + hexstr[1:]


# columns the default verify reads: a change fails it
CHAIN_MODIFICATIONS = {
    "prev_hash": _flip,
    "hash": _flip,
    "mac": _flip,
    "tenant": lambda v: "globex-2",
    "canonical": lambda v: None,
}
# columns that are only there to filter on: a change fails verify --deep
FILTER_MODIFICATIONS = {
    "action": lambda v: "auth.logout" if v != "auth.logout" else "auth.login",
    "result": lambda v: "denied" if v != "denied" else "success",
    "severity": lambda v: "critical" if v != "critical" else "info",
    "details": lambda v: '{"i": -1}',
    "time": lambda v: v[:-1] + ("1" if v[-1] != "1" else "2"),
    "event_id": lambda v: str(uuid.uuid4()),
    "actor_enc": lambda v: ("A" if v[0] != "A" else "B") + v[1:],
    "target_key": lambda v: str(uuid.uuid4()),
    "schema_version": lambda v: 2,
}


def test_untouched_log_verifies(pristine):
    for deep in (False, True):
        report = Copy(pristine).verify(deep=deep)
        assert report.ok and report.records == N and report.checkpoints == 2


def _modify(c: Copy, seq: int, field: str, change) -> dict:
    row = next(r for r in c.rows() if r["seq"] == seq)
    c.sql.execute(
        f"UPDATE fedhub_audit_records SET {field}=? WHERE id=?", (change(row[field]), row["id"])
    )
    return row


@SETTINGS
@given(seq=st.integers(1, N), field=st.sampled_from(sorted(CHAIN_MODIFICATIONS)))
def test_any_modification_of_the_chain_is_detected(pristine, seq, field):
    c = Copy(pristine)
    _modify(c, seq, field, CHAIN_MODIFICATIONS[field])
    report = c.verify()
    assert not report.ok and report.bad_seq == seq, report.as_dict()


@SETTINGS
@given(seq=st.integers(1, N), data=st.data())
def test_any_changed_canonical_byte_is_detected(pristine, seq, data):
    c = Copy(pristine)
    row = next(r for r in c.rows() if r["seq"] == seq)
    stored = bytearray(row["canonical"])
    at = data.draw(st.integers(0, len(stored) - 1))
    stored[at] = data.draw(st.integers(0, 255).filter(lambda b: b != stored[at]))
    c.sql.execute(
        "UPDATE fedhub_audit_records SET canonical=? WHERE id=?", (bytes(stored), row["id"])
    )
    report = c.verify()
    assert not report.ok and report.bad_seq == seq, report.as_dict()


@SETTINGS
@given(seq=st.integers(1, N), field=st.sampled_from(sorted(FILTER_MODIFICATIONS)))
def test_any_modification_of_a_column_is_detected_deep_and_reads_show_the_truth(
    pristine, seq, field
):
    c = Copy(pristine)
    before = [e for e in c.events(tenants=["acme"]) if e["seq"] == seq]
    _modify(c, seq, field, FILTER_MODIFICATIONS[field])
    after = [e for e in c.events(tenants=["acme"]) if e["seq"] == seq]
    assert after == before and len(after) == 1  # rendered from the bytes the hash covers
    report = c.verify(deep=True)
    assert not report.ok and report.bad_seq == seq, report.as_dict()
    assert "differs from its hashed bytes" in report.problem


@SETTINGS
@given(seq=st.integers(1, N))
def test_any_deletion_is_detected(pristine, seq):
    c = Copy(pristine)
    c.sql.execute("DELETE FROM fedhub_audit_records WHERE tenant='acme' AND seq=?", (seq,))
    report = c.verify()
    assert not report.ok and report.bad_seq == seq, report.as_dict()


@SETTINGS
@given(position=st.integers(1, N + 1), careful=st.booleans())
def test_any_insertion_is_detected(pristine, position, careful):
    """A forged record at ``position``, later ones renumbered; a careful forger
    also links it to its predecessor and gives it a correct hash."""
    c = Copy(pristine)
    rows = c.rows()
    template = dict(rows[0])
    for r in sorted(rows, key=lambda r: -r["seq"]):
        if r["seq"] >= position:
            c.sql.execute("UPDATE fedhub_audit_records SET seq=seq+1 WHERE id=?", (r["id"],))
    forged = {
        **template,
        "seq": position,
        "event_id": str(uuid.uuid4()),
        "action": "tenant.deleted",
    }
    forged.pop("id")
    if careful:
        forged["prev_hash"] = rows[position - 2]["hash"] if position > 1 else crypto.GENESIS
        forged["canonical"] = record_canonical(forged)
        forged["hash"] = record_hash(forged)
    cols = ",".join(forged)
    c.sql.execute(
        f"INSERT INTO fedhub_audit_records ({cols}) VALUES ({','.join('?' * len(forged))})",
        list(forged.values()),
    )
    report = c.verify()
    assert not report.ok and report.bad_seq in (position, position + 1), report.as_dict()


@SETTINGS
@given(pair=st.lists(st.integers(1, N), min_size=2, max_size=2, unique=True))
def test_any_reordering_is_detected(pristine, pair):
    i, j = sorted(pair)
    c = Copy(pristine)
    ids = {r["seq"]: r["id"] for r in c.rows()}
    c.sql.execute("UPDATE fedhub_audit_records SET seq=-1 WHERE id=?", (ids[i],))
    c.sql.execute("UPDATE fedhub_audit_records SET seq=? WHERE id=?", (i, ids[j]))
    c.sql.execute("UPDATE fedhub_audit_records SET seq=? WHERE id=?", (j, ids[i]))
    report = c.verify()
    assert not report.ok and report.bad_seq == i, report.as_dict()


@SETTINGS
@given(keep=st.integers(0, N - 1), drop_head=st.booleans())
def test_any_truncation_after_a_checkpoint_is_detected(pristine, keep, drop_head):
    """Deleting the tail is detected by the signed checkpoint, even when the
    database owner also rolls the chain head back to match."""
    c = Copy(pristine)
    c.sql.execute("DELETE FROM fedhub_audit_records WHERE tenant='acme' AND seq>?", (keep,))
    if drop_head:
        c.sql.execute("DELETE FROM fedhub_audit_heads WHERE tenant='acme'")
        c.sql.execute("DELETE FROM fedhub_audit_checkpoints WHERE tenant='acme'")
    report = c.verify()
    assert not report.ok and report.bad_seq == keep + 1, report.as_dict()


@SETTINGS
@given(seq=st.integers(1, N), stolen_master_key=st.booleans())
def test_rewriting_history_with_recomputed_hashes_is_detected(pristine, seq, stolen_master_key):
    """An attacker who recomputes every later hash (and, with the master key,
    every MAC) still cannot match the signed checkpoints."""
    c = Copy(pristine)
    mac_key = c.audit.keys.mac_key()
    rows = c.rows()
    prev = rows[seq - 2]["hash"] if seq > 1 else crypto.GENESIS

    for r in rows[seq - 1 :]:
        parsed = dict(r)
        if r["seq"] == seq:
            parsed["action"] = "auth.logout" if r["action"] != "auth.logout" else "auth.login"
        parsed["prev_hash"] = prev
        canonical = record_canonical(parsed)
        prev = record_hash(parsed)
        mac = crypto.record_mac(mac_key, prev) if stolen_master_key else r["mac"]
        c.sql.execute(
            "UPDATE fedhub_audit_records SET action=?, prev_hash=?, canonical=?, hash=?, mac=? "
            "WHERE id=?",
            (parsed["action"], parsed["prev_hash"], canonical, prev, mac, r["id"]),
        )
    c.sql.execute("UPDATE fedhub_audit_heads SET hash=? WHERE tenant='acme'", (prev,))
    report = c.verify()
    assert not report.ok, report.as_dict()
    assert report.bad_seq == (
        10 if stolen_master_key and seq <= 10 else N if stolen_master_key else seq
    )

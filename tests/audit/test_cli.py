"""``fedhub audit verify`` exit codes and messages, erase-user and public-key."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from fedhub import db as fedhub_db
from fedhub.audit import AuditLog
from fedhub.cli import main
from tests.audit.conftest import sample_events


def _cli(tmp_path, *args):
    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    return CliRunner().invoke(
        main,
        ["--db-url", url, "--state-dir", str(tmp_path), "audit", *args],
        env={"FEDHUB_AUDIT_DIR": "", "FEDHUB_EVENTS_SPOOL": str(tmp_path / "spool")},
        catch_exceptions=False,
    )


def test_verify_exit_codes_name_the_first_bad_record(tmp_path):
    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    fedhub_db.upgrade(url)
    audit = AuditLog(db_url=url, audit_dir=str(tmp_path / "audit"))
    audit.append(sample_events(12, tenants=("acme", "globex")))
    r = _cli(tmp_path, "checkpoint")
    assert r.exit_code == 0 and "acme: signed seq 6" in r.output
    r = _cli(tmp_path, "verify")
    assert r.exit_code == 0, r.output
    assert "acme: OK, 6 records" in r.output and "globex: OK" in r.output
    fedhub_db.dispose_engines()
    with sqlite3.connect(tmp_path / "jupyterhub.sqlite") as conn:
        conn.execute(
            "UPDATE fedhub_audit_records SET result='success' WHERE tenant='globex' AND seq=4 AND result!='success'"
        )
        conn.execute(
            "UPDATE fedhub_audit_records SET severity='debug' WHERE tenant='globex' AND seq=4"
        )
    # a column reads filter on: the default verify checks the hashed bytes, --deep the columns
    r = _cli(tmp_path, "verify")
    assert r.exit_code == 0, r.output
    r = _cli(tmp_path, "verify", "--deep")
    assert r.exit_code == 1
    assert "first bad record seq 4" in r.output and "'globex'" in r.output
    assert "column severity differs from its hashed bytes" in r.output
    with sqlite3.connect(tmp_path / "jupyterhub.sqlite") as conn:  # what the hash covers
        conn.execute(
            "UPDATE fedhub_audit_records SET canonical=CAST(replace(CAST(canonical AS TEXT),"
            " '\"seq\":5', '\"seq\":6') AS BLOB) WHERE tenant='globex' AND seq=5"
        )
    r = _cli(tmp_path, "verify")
    assert r.exit_code == 1
    assert "first bad record seq 5" in r.output and "hash mismatch" in r.output
    r = _cli(tmp_path, "verify", "--tenant", "acme")
    assert r.exit_code == 0, r.output
    r = _cli(tmp_path, "public-key")
    assert r.output.startswith("-----BEGIN PUBLIC KEY-----")
    r = _cli(tmp_path, "erase-user", "alice", "--yes")
    assert r.exit_code == 0 and "erased key" in r.output
    r = _cli(tmp_path, "verify", "--tenant", "acme")
    assert r.exit_code == 0, r.output

"""Personal fields of audit records: sealed under each person's data key, revealed on read.

Actor, source IP and user agent are sealed (AES-256-GCM, the event id as AAD)
under the actor's key; the target and the personal detail keys under the
target's key. The record hash covers the ciphertext, so destroying a data key
(:func:`fedhub.audit.retention.erase_subject`) hides the fields for good
without breaking any hash.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from json.encoder import encode_basestring
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.audit import crypto
from fedhub.audit.models import PLATFORM, SubjectKey
from fedhub.audit.records import time_text
from fedhub.db.base import utcnow
from fedhub.db.toolkit import insert_ignore

# details keys that name or contact a person: stored encrypted with the target's key
PERSONAL_DETAIL_KEYS = frozenset({"email", "username", "users", "name", "display_name", "invitee"})
ANONYMOUS = "~anonymous"  # the subject of events with a client address but no actor
Ciphers = dict[str, tuple[str, AESGCM]]  # subject name -> (key id, cipher)


def _text_or_null(value) -> str:
    return "null" if value is None else encode_basestring(value)  # TypeError if not text


def _actor_plaintext(actor, source_ip, user_agent) -> bytes:
    """``crypto.canonical`` of the sealed actor fields, without the JSON encoder's
    machinery when they are text (they are: the event schema says so)."""
    try:
        a, s, u = _text_or_null(actor), _text_or_null(source_ip), _text_or_null(user_agent)
        return f'{{"actor":{a},"source_ip":{s},"user_agent":{u}}}'.encode()
    except TypeError:
        return crypto.canonical({"actor": actor, "source_ip": source_ip, "user_agent": user_agent})


def _target_plaintext(target, personal: dict) -> bytes:
    """``crypto.canonical({"target": target, "details": personal})``."""
    try:
        d = crypto.canonical_text(personal) if personal else "{}"
        return f'{{"details":{d},"target":{_text_or_null(target)}}}'.encode()
    except TypeError:
        return crypto.canonical({"target": target, "details": personal})


def subjects(e: dict[str, Any]) -> tuple[str | None, str | None]:
    """Whose keys seal an event's actor fields and its target fields (None: nothing to seal)."""
    actor = e.get("actor")
    if actor is None and (e.get("source_ip") or e.get("user_agent")):
        actor = ANONYMOUS
    target = e.get("target")
    if target is None and PERSONAL_DETAIL_KEYS.intersection(e.get("details") or {}):
        target = actor
    return actor, target


def sealed_fields(e: dict[str, Any], keys: Ciphers) -> dict[str, Any]:
    """The stored columns of an event's personal fields, and its details without them."""
    details = e.get("details") or {}
    personal = None
    if not PERSONAL_DETAIL_KEYS.isdisjoint(details):
        details = dict(details)
        personal = {k: details.pop(k) for k in PERSONAL_DETAIL_KEYS.intersection(details)}
    actor_subject, target_subject = subjects(e)
    aad = e["id"].encode()
    actor_key = actor_enc = target_key = target_enc = None
    if actor_subject:
        actor_key, aead = keys[actor_subject]
        plain = _actor_plaintext(e.get("actor"), e.get("source_ip"), e.get("user_agent"))
        actor_enc = crypto.seal_bytes(aead, plain, aad)
    if target_subject:
        target_key, aead = keys[target_subject]
        target_enc = crypto.seal_bytes(
            aead, _target_plaintext(e.get("target"), personal or {}), aad
        )
    return {
        "details": crypto.canonical_text(details),
        "actor_key": actor_key,
        "actor_enc": actor_enc,
        "target_key": target_key,
        "target_enc": target_enc,
    }


def subject_keys(s: Session, keyring: crypto.KeyRing, names: set[str]) -> Ciphers:
    """Each subject's (key id, cipher), creating keys for new subjects."""
    hashes = {keyring.subject_hash(name): name for name in names}
    found: Ciphers = {}
    if not hashes:
        return found

    def load():
        for k in s.scalars(select(SubjectKey).where(SubjectKey.subject_hash.in_(list(hashes)))):
            found[hashes[k.subject_hash]] = (k.key_id, keyring.cipher(k.wrapped_key, k.key_id))

    load()
    missing = [h for h, name in hashes.items() if name not in found]
    if missing:
        rows = []
        for h in missing:
            key_id = str(uuid.uuid4())
            wrapped = keyring.wrap(AESGCM.generate_key(256), key_id)
            rows.append(
                {
                    "key_id": key_id,
                    "subject_hash": h,
                    "wrapped_key": wrapped,
                    "created_at": utcnow(),
                }
            )
        # a concurrent ingester may have made the same subject's key: theirs is kept
        insert_ignore(s, SubjectKey.__table__, rows, ["subject_hash"])
        load()
    return found


def ciphers(s: Session, keyring: crypto.KeyRing, key_ids: Iterable[str]) -> dict[str, AESGCM]:
    """Ciphers of the keys that still exist (erased ones are simply absent)."""
    ids = sorted(set(filter(None, key_ids)))
    out: dict[str, AESGCM] = {}
    for i in range(0, len(ids), 900):
        for k in s.scalars(select(SubjectKey).where(SubjectKey.key_id.in_(ids[i : i + 900]))):
            out[k.key_id] = keyring.cipher(k.wrapped_key, k.key_id)
    return out


def subject_key_id(s: Session, keyring: crypto.KeyRing, subject: str) -> str | None:
    return s.scalar(
        select(SubjectKey.key_id).where(SubjectKey.subject_hash == keyring.subject_hash(subject))
    )


def reveal(record: dict[str, Any], ciphers: dict[str, AESGCM]) -> dict[str, Any]:
    """A stored record as an event again: personal fields decrypted, or marked erased."""
    aad = record["event_id"].encode()
    out = {
        "id": record["event_id"],
        "tenant": None if record["tenant"] == PLATFORM else record["tenant"],
        "seq": record["seq"],
        "time": time_text(record["time"]) + "Z",
        "action": record["action"],
        "result": record["result"],
        "severity": record["severity"],
        "actor": None,
        "target": None,
        "source_ip": None,
        "user_agent": None,
        "details": json.loads(record["details"] or "{}"),
        "erased": [],
    }
    for part in ("actor", "target"):
        enc = record[f"{part}_enc"]
        if enc is None:
            continue
        cipher = ciphers.get(record[f"{part}_key"])
        fields = crypto.unseal(cipher, enc, aad) if cipher else None
        if fields is None:
            out["erased"].append(part)
            continue
        personal = fields.pop("details", None) or {}
        out.update(fields)
        out["details"].update(personal)
    return out

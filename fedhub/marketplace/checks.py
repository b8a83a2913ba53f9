"""What an asset or a version may hold: names, slugs, licences, prices, content by type.

Checked before anything is written; each refusal is a :class:`BadAsset` naming the field.
An algorithm's source is parsed, never run: it runs only after a platform admin has read
it and approved it (the review). A dataset is read to its schema (:mod:`.datasets`), a
model loaded as a state dict with ``weights_only`` (:mod:`.weights`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from fedhub.billing.money import cents
from fedhub.marketplace import weights
from fedhub.marketplace.datasets import SUFFIXES, dataset_schema
from fedhub.marketplace.errors import BadAsset
from fedhub.marketplace.models import STANDARD_LICENCES, AssetType, Pricing

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,31}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MAX_TAGS = 12
MAX_PRICE = Decimal("100000.00")


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug or "asset"


def text(value: Any, field: str, *, limit: int, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadAsset(f"{field} must be a non-empty string")
    if len(value) > limit:
        raise BadAsset(f"{field} is longer than {limit} characters")
    return value.strip() if field != "description" else value


def slug(value: Any) -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise BadAsset("slug must be 1-63 of a-z, 0-9 and '-', not starting or ending with '-'")
    return value


def asset_type(value: Any) -> str:
    try:
        return AssetType(value).value
    except ValueError:
        raise BadAsset(
            f"asset_type must be one of {', '.join(t.value for t in AssetType)}"
        ) from None


def tags(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise BadAsset(f"tags must be a list of at most {MAX_TAGS} tags")
    out = []
    for tag in value:
        tag = tag.strip().lower() if isinstance(tag, str) else tag
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            raise BadAsset("each tag is 1-32 of a-z, 0-9 and '-'")
        if tag not in out:
            out.append(tag)
    return " ".join(out)


def licence(value: Any) -> str:
    if value is None:
        return "free"
    if value in STANDARD_LICENCES:
        return value
    if isinstance(value, dict) and isinstance(value.get("custom"), str):
        return text(value["custom"], "licence.custom", limit=20000)
    raise BadAsset(
        "licence must be 'free', 'academic', 'commercial' or {\"custom\": \"<the licence text>\"}"
    )


def price(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value if value is not None else "0"))
    except (InvalidOperation, ValueError):
        raise BadAsset(f"price must be a decimal number, got {str(value)[:40]!r}") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_PRICE:
        raise BadAsset(f"price must be between 0 and {MAX_PRICE}")
    if amount != cents(amount):
        raise BadAsset("price must be whole cents (at most two decimals)")
    return cents(amount)


def pricing(value: Any) -> str:
    try:
        return Pricing(value or Pricing.ONE_OFF).value
    except ValueError:
        raise BadAsset("pricing must be 'one_off' or 'monthly'") from None


def version(value: Any) -> str:
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise BadAsset("version must be 1-32 of letters, digits, '.', '+' and '-', e.g. 1.0.0")
    return value


def content(kind: str, filename: str, data: bytes, max_bytes: int) -> str:
    """Check ``data`` for its asset type; return its SHA-256 (the version's address)."""
    if not data:
        raise BadAsset("content is empty")
    if len(data) > max_bytes:
        raise BadAsset(f"content is {len(data)} bytes; at most {max_bytes} are accepted")
    if kind == AssetType.ALGORITHM:
        try:
            ast.parse(data.decode("utf-8"), filename=filename)
        except (UnicodeDecodeError, SyntaxError, ValueError) as e:
            raise BadAsset(
                f"an algorithm is Python source; {filename} does not parse: {e}"
            ) from None
    elif kind == AssetType.NOTEBOOK:
        try:
            nb = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise BadAsset(f"a notebook is an .ipynb (JSON); {filename} is not JSON") from None
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise BadAsset(f"{filename} is not a notebook: it has no list of cells")
    elif kind == AssetType.DATASET:
        if not filename.lower().endswith(SUFFIXES):
            raise BadAsset(f"a dataset's file is {', '.join(SUFFIXES)}")
    elif kind == AssetType.MODEL:
        if not filename.lower().endswith(weights.SUFFIXES):
            raise BadAsset(
                f"a model's file is a PyTorch state dict ({', '.join(weights.SUFFIXES)})"
            )
    return hashlib.sha256(data).hexdigest()


def schema(kind: str, filename: str, data: bytes, spec: dict[str, Any]) -> dict[str, Any] | None:
    """What is stored as the version's ``schema``: a dataset's columns, rows, label and
    default partition (:mod:`.datasets`; ``spec`` may name ``label_column`` and
    ``partition``), a model's tensors once it loads as a state dict (:mod:`.weights`);
    None for algorithms and notebooks."""
    if kind == AssetType.MODEL:
        return weights.model_schema(filename, data)
    if kind != AssetType.DATASET:
        return None
    return dataset_schema(
        filename, data, label_column=spec.get("label_column"), partition=spec.get("partition")
    )

"""A tenant's private datasets on disk: versioned, checksummed, readable only by the tenant.

Layout (``root`` is ``$FEDHUB_STATE_DIR/tenant-data`` under ``fedhub up``)::

    <root>/<slug>/datasets/<name>/<version>/arrays.npz     x float32 [n, f], y int64 [n],
                                                           split uint8 [n] (0 train, 1 test)
                                           /schema.json    Schema.to_dict()
                                           /card.md        the data card
                                           /manifest.json  sha256 of arrays.npz, rows, version

Who can read it: run as root, ``<root>`` is 0711 (traversable, not listable) and
``<root>/<slug>`` and everything under it belong to the tenant's own account
(:func:`fedhub.accounts.tenant_account`, ``fedhub_t_acme``) with 0700 folders and 0600
files. Only processes of that account (the tenant's workers) and root (the experiments
service that writes it) can open the files; no user's server, no other tenant's worker,
not even the shared Dask workers. Not root, the files are the service's own, 0600.

A version is written to a hidden folder first and renamed into place, so a reader never
sees half a version; versions are numbered 1, 2, 3... and never reused while the dataset
exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fedhub import accounts

if TYPE_CHECKING:  # NumPy is imported where arrays are handled: the service loads without it
    import numpy as np

__all__ = [
    "ARRAYS",
    "DatasetCorrupt",
    "DatasetError",
    "DatasetNotFound",
    "DatasetRef",
    "DatasetStore",
    "Schema",
    "load_arrays",
    "default_root",
]

ARRAYS = "arrays.npz"
SCHEMA = "schema.json"
CARD = "card.md"
MANIFEST = "manifest.json"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
PREFIX = "tenant/"
MAX_CLASSES = 100_000
MAX_FEATURES = 1_000_000


class DatasetError(ValueError):
    """A dataset, a reference or a schema the store refuses (the message says why)."""


class DatasetNotFound(DatasetError):
    """No such dataset or version in this tenant's store."""


class DatasetCorrupt(DatasetError):
    """A version's files do not match its manifest (changed or truncated on disk)."""


def default_root() -> Path:
    """``$FEDHUB_TENANT_DATA_DIR``, else ``$FEDHUB_STATE_DIR/tenant-data``."""
    from fedhub import storage

    return Path(storage.tenant_data_root())


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DatasetError(
            f"dataset name {name!r}: use 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


# -- references ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRef:
    """``tenant/<name>@<version>``: one of the caller's tenant's datasets.

    ``version`` None means the latest version (``@latest`` or no ``@``).
    """

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        if not isinstance(text, str) or not text.startswith(PREFIX):
            raise DatasetError(f"{text!r} is not a tenant dataset: write tenant/<name>@<version>")
        name, _, version = text[len(PREFIX) :].partition("@")
        check_name(name)
        if version in ("", "latest"):
            return cls(name, None)
        if not version.isdigit() or int(version) < 1:
            raise DatasetError(f"{text!r}: the version is a number from 1, or 'latest'")
        return cls(name, int(version))

    @staticmethod
    def is_tenant(text) -> bool:
        return isinstance(text, str) and text.startswith(PREFIX)

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}@{self.version if self.version else 'latest'}"


# -- schema --------------------------------------------------------------------------------


@dataclass
class Schema:
    """What a dataset holds: its feature columns (in ``x``'s order) and its label.

    ``features``: ``[{"name": "age", "dtype": "float64"}, ...]``;
    ``label``: ``{"name": "churned", "num_classes": 2, "classes": ["no", "yes"]}``
    (``classes``, the original label values in class-index order, is optional).
    """

    features: list[dict] = field(default_factory=list)
    label: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.features:
            raise DatasetError("a schema needs at least one feature")
        for f in self.features:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "dtype" not in f:
                raise DatasetError(f"schema feature {f!r}: needs a 'name' and a 'dtype'")
        label = self.label
        if not isinstance(label, dict) or not isinstance(label.get("name"), str):
            raise DatasetError("the schema's label needs a 'name'")
        k = label.get("num_classes")
        if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= MAX_CLASSES:
            raise DatasetError(
                f"the schema's label needs 'num_classes', an integer from 2 to {MAX_CLASSES}"
            )
        if len(self.features) > MAX_FEATURES:
            raise DatasetError(f"a schema has at most {MAX_FEATURES} features")

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def num_classes(self) -> int:
        return int(self.label["num_classes"])

    def matches(self, other: Schema) -> list[str]:
        """Why ``other`` cannot be trained with this schema; empty when it can.

        The same features (names and types, in the same order) and the same label
        (name and number of classes); class value names may differ.
        """
        problems = []
        if self.num_features != other.num_features:
            problems.append(f"{other.num_features} features where {self.num_features} expected")
        for i, (mine, theirs) in enumerate(zip(self.features, other.features, strict=False)):
            if mine["name"] != theirs["name"]:
                problems.append(f"feature {i} is {theirs['name']!r}, expected {mine['name']!r}")
            elif mine["dtype"] != theirs["dtype"]:
                problems.append(
                    f"feature {mine['name']!r} is {theirs['dtype']}, expected {mine['dtype']}"
                )
        if self.label["name"] != other.label["name"]:
            problems.append(
                f"the label is {other.label['name']!r}, expected {self.label['name']!r}"
            )
        if self.num_classes != other.num_classes:
            problems.append(
                f"the label has {other.num_classes} classes, expected {self.num_classes}"
            )
        return problems

    def to_dict(self) -> dict:
        return {"features": [dict(f) for f in self.features], "label": dict(self.label)}

    @classmethod
    def from_dict(cls, data) -> Schema:
        if not isinstance(data, dict):
            raise DatasetError("a schema is an object with 'features' and 'label'")
        unknown = set(data) - {"features", "label"}
        if unknown:
            raise DatasetError(f"unknown schema fields: {', '.join(sorted(unknown))}")
        features = data.get("features")
        if not isinstance(features, list):
            raise DatasetError("the schema's 'features' is a list of {name, dtype}")
        return cls([dict(f) if isinstance(f, dict) else f for f in features], data.get("label"))


# -- arrays --------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_arrays(arrays: dict[str, np.ndarray], schema: Schema) -> int:
    """The number of rows, after checking shapes, types and labels against ``schema``."""
    import numpy as np

    missing = {"x", "y", "split"} - set(arrays)
    if missing:
        raise DatasetError(f"arrays.npz lacks {', '.join(sorted(missing))} (needs x, y, split)")
    x, y, split = arrays["x"], arrays["y"], arrays["split"]
    if x.dtype != np.float32 or x.ndim != 2:
        raise DatasetError(f"x must be a float32 matrix [rows, features], not {x.dtype} {x.shape}")
    if y.dtype != np.int64 or y.shape != (x.shape[0],):
        raise DatasetError(f"y must be int64 [rows] ({x.shape[0]} rows), not {y.dtype} {y.shape}")
    if split.dtype != np.uint8 or split.shape != (x.shape[0],):
        raise DatasetError("split must be uint8 [rows]: 0 train, 1 test")
    if x.shape[1] != schema.num_features:
        raise DatasetError(f"x has {x.shape[1]} features, the schema {schema.num_features}")
    if not np.isfinite(x).all():
        raise DatasetError("x holds NaN or infinite values")
    if len(y) and (y.min() < 0 or y.max() >= schema.num_classes):
        raise DatasetError(f"labels must be class indices 0..{schema.num_classes - 1}")
    if not set(np.unique(split).tolist()) <= {0, 1}:
        raise DatasetError("split holds values other than 0 (train) and 1 (test)")
    if not (split == 0).any() or not (split == 1).any():
        raise DatasetError("a dataset needs both training rows (split 0) and test rows (split 1)")
    return int(x.shape[0])


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an uploaded ``.npz`` (no pickled objects are ever loaded)."""
    import numpy as np

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as e:  # numpy raises ValueError, OSError, BadZipFile, EOFError...
        raise DatasetError(f"the upload is not a readable .npz file ({type(e).__name__})") from None


def load_arrays(version_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``x``, ``y``, ``split`` of one version, after checking arrays.npz's sha256.

    This is what runs on a tenant's worker, as the tenant's account: the files are
    readable by nothing else.
    """
    import numpy as np

    folder = Path(version_dir)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        actual = sha256_file(folder / ARRAYS)
    except FileNotFoundError as e:
        raise DatasetCorrupt(f"{folder}: {Path(e.filename).name} is missing") from None
    except ValueError:
        raise DatasetCorrupt(f"{folder}: manifest.json is not valid JSON") from None
    if actual != manifest.get("sha256"):
        raise DatasetCorrupt(f"{folder}: arrays.npz does not match its manifest's sha256")
    with np.load(folder / ARRAYS, allow_pickle=False) as npz:
        return {k: npz[k] for k in ("x", "y", "split")}


# -- the store -----------------------------------------------------------------------------


class DatasetStore:
    """The tenant datasets under ``root`` (one folder per tenant slug).

    Blocking file work: call it off the event loop.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    # paths
    def tenant_dir(self, slug: str) -> Path:
        return self.root / check_name(slug)

    def dataset_dir(self, slug: str, name: str) -> Path:
        return self.tenant_dir(slug) / "datasets" / check_name(name)

    def version_dir(self, slug: str, name: str, version: int | None = None) -> Path:
        """The folder of ``version`` (latest when None); DatasetNotFound if there is none."""
        versions = self.versions(slug, name)
        if not versions:
            raise DatasetNotFound(f"no dataset {name!r}")
        if version is None:
            version = versions[-1]
        if version not in versions:
            raise DatasetNotFound(f"dataset {name!r} has no version {version}")
        return self.dataset_dir(slug, name) / str(version)

    def resolve(self, slug: str, ref: DatasetRef | str) -> tuple[Path, int]:
        """The version folder and number a reference names."""
        if isinstance(ref, str):
            ref = DatasetRef.parse(ref)
        folder = self.version_dir(slug, ref.name, ref.version)
        return folder, int(folder.name)

    # reading
    def names(self, slug: str) -> list[str]:
        folder = self.tenant_dir(slug) / "datasets"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and NAME.fullmatch(p.name))

    def versions(self, slug: str, name: str) -> list[int]:
        folder = self.dataset_dir(slug, name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())

    def describe(self, slug: str, name: str, version: int | None = None) -> dict:
        """Manifest, schema and card of one version."""
        folder = self.version_dir(slug, name, version)
        manifest = json.loads((folder / MANIFEST).read_text())
        return {
            **manifest,
            "name": name,
            "schema": json.loads((folder / SCHEMA).read_text()),
            "card": (folder / CARD).read_text(),
            "bytes": sum(p.stat().st_size for p in folder.iterdir()),
        }

    def schema(self, slug: str, name: str, version: int | None = None) -> Schema:
        folder = self.version_dir(slug, name, version)
        return Schema.from_dict(json.loads((folder / SCHEMA).read_text()))

    def bytes(self, slug: str) -> int:
        """Disk usage of the tenant's store (what ``storage_gb`` counts)."""
        from fedhub import storage

        return storage.directory_bytes(self.tenant_dir(slug))

    # writing
    def write(
        self,
        slug: str,
        name: str,
        arrays: dict[str, np.ndarray] | bytes,
        schema: Schema,
        card: str = "",
        *,
        label_counts: bool = True,
    ) -> dict:
        """Store a new version (the next number) and return its manifest.

        ``arrays`` is the dict of ``x``, ``y``, ``split`` or the bytes of an ``.npz``
        holding them (what the client uploads, written as received so its checksum is
        the one the client computed).
        """
        check_name(name)
        raw = arrays if isinstance(arrays, bytes) else _npz_bytes(arrays)
        parsed = read_npz(raw) if isinstance(arrays, bytes) else arrays
        rows = check_arrays(parsed, schema)
        owner = self._owner(slug)
        parent = self._make_dirs(self.dataset_dir(slug, name), owner)
        versions = self.versions(slug, name)
        version = (versions[-1] + 1) if versions else 1
        staging = parent / f".{version}.{os.getpid()}.{time.monotonic_ns()}"
        self._mkdir(staging, owner)
        try:
            manifest = {
                "version": version,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "rows": rows,
                "train_rows": int((parsed["split"] == 0).sum()),
                "test_rows": int((parsed["split"] == 1).sum()),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if label_counts:
                import numpy as np

                counts = np.bincount(parsed["y"], minlength=schema.num_classes)
                manifest["label_counts"] = [int(c) for c in counts]
            self._write(staging / ARRAYS, raw, owner)
            self._write(staging / SCHEMA, json.dumps(schema.to_dict(), indent=1), owner)
            self._write(staging / CARD, card_text(name, version, schema, manifest, card), owner)
            self._write(staging / MANIFEST, json.dumps(manifest, indent=1), owner)
            target = parent / str(version)
            os.rename(staging, target)  # fails if a concurrent write took this number
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return manifest

    def delete(self, slug: str, name: str, version: int | None = None) -> list[int]:
        """Remove one version, or the whole dataset (``version`` None); the versions removed."""
        if version is None:
            versions = self.versions(slug, name)
            if not versions:
                raise DatasetNotFound(f"no dataset {name!r}")
            shutil.rmtree(self.dataset_dir(slug, name))
            return versions
        folder = self.version_dir(slug, name, version)
        shutil.rmtree(folder)
        if not self.versions(slug, name):
            shutil.rmtree(self.dataset_dir(slug, name), ignore_errors=True)
        return [version]

    # ownership
    def make_tenant_dirs(self, slug: str, folder: Path) -> Path:
        """Create ``folder`` below ``slug``'s folder (a bought dataset's copy, say), each
        level 0700 and owned by the tenant's account when fedhub runs as root."""
        return self._make_dirs(folder, self._owner(slug))

    def _owner(self, slug: str):
        """The tenant's account (made if missing) when root, else None (files stay ours)."""
        if not accounts.can_isolate():
            return None
        return accounts.ensure_account(accounts.tenant_account(slug))

    def _make_dirs(self, folder: Path, owner) -> Path:
        """Create ``folder`` below the tenant's folder, each level 0700 and the tenant's."""
        if not self.root.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o711)  # tenants' workers traverse it to their own folder
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            self._mkdir(current, owner)
        return folder

    @staticmethod
    def _mkdir(folder: Path, owner) -> None:
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            return
        if owner is not None:
            os.chown(folder, owner.pw_uid, owner.pw_gid)

    @staticmethod
    def _write(path: Path, data: bytes | str, owner) -> None:
        write_private(path, data, owner)


def write_private(path: str | os.PathLike, data: bytes | str, owner=None) -> None:
    """Create ``path`` (never an existing file or a link) 0600, owned by ``owner`` (a
    ``pwd`` entry) when given, with ``data``, synced to disk."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if owner is not None:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **{k: arrays[k] for k in ("x", "y", "split")})
    return buffer.getvalue()


def card_text(name: str, version: int, schema: Schema, manifest: dict, text: str = "") -> str:
    """The data card: the owner's own words, then what the store knows for certain."""
    features = ", ".join(f"{f['name']} ({f['dtype']})" for f in schema.features[:50])
    if schema.num_features > 50:
        features += f", ... ({schema.num_features} in all)"
    lines = [
        f"# {name} v{version}",
        "",
        (text or "").strip() or "_No description given._",
        "",
        "## Facts",
        "",
        f"- rows: {manifest['rows']} ({manifest['train_rows']} train, "
        f"{manifest['test_rows']} test)",
        f"- features ({schema.num_features}): {features}",
        f"- label: {schema.label['name']} ({schema.num_classes} classes)",
    ]
    if "label_counts" in manifest:
        lines.append(f"- rows per class: {manifest['label_counts']}")
    lines += [
        f"- sha256 of arrays.npz: {manifest['sha256']}",
        f"- created: {manifest['created_at']}",
    ]
    return "\n".join(lines) + "\n"

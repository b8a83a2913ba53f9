"""Turn what a notebook has (a CSV, parquet or npz file, a DataFrame, a folder of ``.npy``
arrays) into the store's arrays: ``x`` float32, ``y`` int64 class indices, ``split``.

Runs in the notebook, as the user: the user's files are read by the user's own process,
and only the converted arrays are uploaded to the tenant's store.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .store import DatasetError, Schema

__all__ = ["to_arrays", "npz_bytes", "split_rows"]


def split_rows(y: np.ndarray, test_fraction: float, seed: int = 0) -> np.ndarray:
    """A stratified train/test split (uint8: 0 train, 1 test); every class with at least
    two rows has at least one row on each side."""
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    rng = np.random.default_rng([seed, 18])
    split = np.zeros(len(y), dtype=np.uint8)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(idx)))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        split[idx[:n_test]] = 1
    return split


def _encode_labels(values: np.ndarray, label: str) -> tuple[np.ndarray, dict]:
    """Class indices 0..k-1 and the schema's label entry (``classes``: original values)."""
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise DatasetError(f"label {label!r} has missing values")
    if values.dtype.kind == "O" and any(v is None for v in values):
        raise DatasetError(f"label {label!r} has missing values")
    classes, y = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise DatasetError(f"label {label!r} has {len(classes)} class; a classifier needs two")
    natural = values.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes)))
    entry = {"name": label, "num_classes": int(len(classes))}
    if not natural:
        entry["classes"] = [c.item() if hasattr(c, "item") else str(c) for c in classes]
    return y.astype(np.int64), entry


def _from_frame(
    frame, label: str, features: list[str] | None
) -> tuple[np.ndarray, np.ndarray, Schema]:
    if label not in frame.columns:
        raise DatasetError(
            f"no label column {label!r} (columns: {', '.join(map(str, frame.columns))})"
        )
    names = list(features) if features is not None else [c for c in frame.columns if c != label]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DatasetError(f"no feature column(s) {', '.join(map(repr, missing))}")
    if label in names:
        raise DatasetError(f"the label {label!r} cannot also be a feature")
    if not names:
        raise DatasetError("no feature columns")
    specs = []
    for name in names:
        column = frame[name]
        kind = column.dtype.kind
        if kind not in "biuf":
            raise DatasetError(
                f"feature {name!r} is {column.dtype}, not numeric: encode it first "
                "(pandas.get_dummies for categories) or leave it out with features=[...]"
            )
        if column.isna().any():
            raise DatasetError(f"feature {name!r} has missing values: fill or drop them first")
        specs.append({"name": str(name), "dtype": str(column.dtype)})
    x = frame[names].to_numpy(dtype=np.float32)
    y, label_entry = _encode_labels(frame[label].to_numpy(), label)
    return x, y, Schema(specs, label_entry)


def _from_matrix(
    x, y, label: str, features: list[str] | None
) -> tuple[np.ndarray, np.ndarray, Schema]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2:
        raise DatasetError(f"x must be a matrix [rows, features], not shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"y must hold one label per row of x ({len(x)}), not shape {y.shape}")
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"x must be numeric, not {x.dtype}")
    names = list(features) if features is not None else [f"x{i}" for i in range(x.shape[1])]
    if len(names) != x.shape[1]:
        raise DatasetError(f"{len(names)} feature names for {x.shape[1]} columns of x")
    if not np.isfinite(x.astype(np.float64)).all():
        raise DatasetError("x holds NaN or infinite values")
    specs = [{"name": str(n), "dtype": str(x.dtype)} for n in names]
    y_idx, label_entry = _encode_labels(y, label)
    return x.astype(np.float32), y_idx, Schema(specs, label_entry)


def _read(source, label: str, features):
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is in the notebook extra
        pd = None
    if pd is not None and isinstance(source, pd.DataFrame):
        return _from_frame(source, label, features)
    if not isinstance(source, (str, os.PathLike)):
        raise DatasetError(
            f"cannot register a {type(source).__name__}: give a path (csv, parquet, npz), "
            "a pandas DataFrame or a folder holding x.npy and y.npy"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        xs, ys = path / "x.npy", path / "y.npy"
        if not xs.is_file() or not ys.is_file():
            raise DatasetError(f"{path} holds no x.npy and y.npy")
        return _from_matrix(
            np.load(xs, allow_pickle=False), np.load(ys, allow_pickle=False), label, features
        )
    if not path.is_file():
        raise DatasetError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files or "y" not in npz.files:
                raise DatasetError(f"{path} holds no arrays 'x' and 'y' ({', '.join(npz.files)})")
            return _from_matrix(npz["x"], npz["y"], label, features)
    if pd is None:  # pragma: no cover
        raise DatasetError("reading csv or parquet needs pandas (pip install pandas)")
    if suffix in (".csv", ".tsv", ".txt"):
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    elif suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise DatasetError("reading parquet needs pyarrow (pip install pyarrow)") from None
    else:
        raise DatasetError(f"{path}: give a .csv, .tsv, .parquet or .npz file")
    return _from_frame(frame, label, features)


def to_arrays(
    source,
    *,
    label: str = "label",
    features: list[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], Schema]:
    """The store's arrays and the schema of ``source``.

    ``label`` names the label column (for arrays, only its name in the schema);
    ``features`` picks and orders the feature columns (default: every other column).
    """
    x, y, schema = _read(source, label, features)
    if len(y) < 4:
        raise DatasetError(f"{len(y)} rows: a dataset needs at least 4")
    return {"x": x, "y": y, "split": split_rows(y, test_fraction, seed)}, schema


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The ``.npz`` upload of ``arrays`` (compressed; no pickled objects)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: arrays[k] for k in ("x", "y", "split")})
    return buffer.getvalue()

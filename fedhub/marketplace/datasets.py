"""A dataset version's schema, read at publish: columns with their dtypes, rows, the label
column and its number of classes, and the default partition a run splits it with.

A dataset is a ``.csv`` or ``.parquet`` table (read with pandas; parquet through pyarrow)
or an ``.npz`` of arrays (numpy, never unpickling: ``allow_pickle=False``). The file is
parsed, never run; what does not parse, has no rows, or has no usable label column is a
:class:`~fedhub.marketplace.errors.BadAsset` (400) naming the file and what is wrong.

The default partition is ``{"name": "dirichlet", "alpha": 0.5}`` unless the publisher
gives one, checked against the FL engine's partitioner registry (:mod:`fedhub.fl.partition`:
its names and its parameters' bounds), so an experiment that uses the dataset can take it
as ``partition``/``partition_params`` as it is.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from fedhub.marketplace.errors import BadAsset

#: the file types a dataset may be, and how each is read
SUFFIXES = (".csv", ".parquet", ".npz")
DEFAULT_PARTITION: dict[str, Any] = {"name": "dirichlet", "alpha": 0.5}
#: columns listed in a schema (a wider table is described by its first ones and a count)
MAX_COLUMNS = 1000


def dataset_schema(
    filename: str, data: bytes, *, label_column: Any = None, partition: Any = None
) -> dict[str, Any]:
    """The schema of a dataset file, or :class:`BadAsset` saying why there is none."""
    suffix = "." + filename.lower().rpartition(".")[2] if "." in filename else ""
    if suffix not in SUFFIXES:
        raise BadAsset(f"a dataset's file is {', '.join(SUFFIXES)}; {filename} is not")
    if label_column is not None and (not isinstance(label_column, str) or not label_column):
        raise BadAsset("label_column is the name of a column (or array) of the file")
    if suffix == ".npz":
        schema = _npz_schema(filename, data, label_column or "y")
    else:
        schema = _table_schema(filename, data, suffix, label_column)
    return {"format": suffix[1:], **schema, "partition": check_partition(partition)}


def check_partition(partition: Any) -> dict[str, Any]:
    """``{"name": <partitioner>, **params}`` (or just the name), checked against
    :mod:`fedhub.fl.partition`'s registry; the default when None."""
    if partition is None:
        return dict(DEFAULT_PARTITION)
    if isinstance(partition, str):
        partition = {"name": partition}
    if not isinstance(partition, dict) or not isinstance(partition.get("name"), str):
        raise BadAsset('partition is {"name": "<partitioner>", ...its parameters}')
    try:  # the FL engine (numpy only for this module, but its package loads torch)
        from fedhub.fl.partition import registry
        from fedhub.fl.registry import ParameterError
    except ImportError:
        raise BadAsset(
            "this marketplace cannot check a partition (the fl extra is not installed); "
            "leave partition out for the default"
        ) from None
    params = {k: v for k, v in partition.items() if k != "name"}
    try:
        checked = registry.check(partition["name"], params, where="partition")
    except KeyError as e:
        raise BadAsset(f"partition: {e.args[0]}") from None
    except ParameterError as e:
        raise BadAsset(str(e), details={"field": e.field, "bound": e.bound}) from None
    return {"name": partition["name"].lower(), **checked}


def _pandas():
    try:
        import pandas
    except ImportError:
        raise BadAsset(
            "this marketplace cannot read .csv or .parquet datasets (pandas is not "
            "installed): publish an .npz"
        ) from None
    return pandas


def _table_schema(filename: str, data: bytes, suffix: str, label: str | None) -> dict[str, Any]:
    pd = _pandas()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(io.BytesIO(data))
        else:
            frame = pd.read_parquet(io.BytesIO(data))
    except ImportError:
        raise BadAsset("this marketplace cannot read .parquet (pyarrow is not installed)") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        # pandas' EmptyDataError and pyarrow's ArrowInvalid are ValueErrors
        raise BadAsset(f"{filename} does not parse as {suffix[1:]}: {_short(e)}") from None
    if len(frame.columns) == 0 or len(frame) == 0:
        raise BadAsset(f"{filename} has no rows (or no columns)")
    names = [str(c) for c in frame.columns]
    label = label or names[-1]
    if label not in names:
        raise BadAsset(f"{filename} has no column {label!r} (label_column)")
    values = frame[frame.columns[names.index(label)]]
    if values.isna().any():
        raise BadAsset(f"{filename}: the label column {label!r} has missing values")
    if values.dtype.kind == "f" and not (values == values.round()).all():
        raise BadAsset(
            f"{filename}: the label column {label!r} holds fractional numbers; a label "
            "column holds classes (name it with label_column)"
        )
    return {
        "rows": int(len(frame)),
        "columns": [
            {"name": n, "dtype": str(frame[c].dtype)}
            for n, c in zip(names[:MAX_COLUMNS], frame.columns[:MAX_COLUMNS], strict=True)
        ],
        "num_columns": len(names),
        "label_column": label,
        "num_classes": _classes(filename, label, int(values.nunique())),
    }


def _npz_schema(filename: str, data: bytes, label: str) -> dict[str, Any]:
    import numpy as np

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        # an object array needs pickle, which is refused (ValueError)
        raise BadAsset(f"{filename} does not parse as npz: {_short(e)}") from None
    if label not in arrays:
        have = ", ".join(arrays) or "none"
        raise BadAsset(f"{filename} has no array {label!r} (label_column; arrays: {have})")
    y = arrays[label]
    if y.ndim != 1 or len(y) == 0:
        raise BadAsset(f"{filename}: the label array {label!r} is not one non-empty column")
    if y.dtype.kind == "f" and (np.isnan(y).any() or not (y == np.round(y)).all()):
        raise BadAsset(f"{filename}: the label array {label!r} holds missing or fractional numbers")
    return {
        "rows": int(len(y)),
        "columns": [
            {"name": name, "dtype": str(a.dtype), "shape": list(a.shape)}
            for name, a in list(arrays.items())[:MAX_COLUMNS]
        ],
        "num_columns": len(arrays),
        "label_column": label,
        "num_classes": _classes(filename, label, int(len(np.unique(y)))),
    }


def _classes(filename: str, label: str, count: int) -> int:
    if count < 2:
        raise BadAsset(
            f"{filename}: the label column {label!r} has {count} class; a federated "
            "classifier's label needs at least two"
        )
    return count


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]

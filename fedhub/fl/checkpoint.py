"""Checkpoints: the experiment definition once, then the run's state every N rounds.

``experiment.pkl`` (cloudpickle: model factory, data, strategy as configured, settings) is
written when a run starts; ``round-000010.ckpt`` holds the global weights, the round, the
strategy's server state (momentum, moments, control variates) and the history. There is
no RNG state to save: every random draw is a pure function of (seed, round, client), which
is what makes a resumed run bit-identical to an uninterrupted one. Files are written to a
temporary name and renamed, so a crash never leaves a half-written checkpoint.

Checkpoints and weights hold a tenant's model (and ``experiment.pkl`` its data): every
file is created 0600 and every folder 0700 from the start, whatever the process's umask;
nothing is ``chmod``-ed after it was written.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import cloudpickle

FORMAT = 1
EXPERIMENT_FILE = "experiment.pkl"
_ROUND_RE = re.compile(r"round-(\d+)\.ckpt$")


def private_dirs(directory: str | os.PathLike) -> Path:
    """``directory`` and each missing parent, created 0700 (``Path.mkdir(parents=True)``
    would give the parents the umask's default mode)."""
    d = Path(directory).absolute()
    missing = []
    while not d.exists():
        missing.append(d)
        d = d.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile
            pass
    return Path(directory)


def _open_private(path: Path):
    """``path`` opened for writing, created 0600 (O_NOFOLLOW: never through a symlink)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with _open_private(tmp) as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_weights(path: str | os.PathLike, state_dict) -> Path:
    """``torch.save`` of final weights into a file created 0600, atomically."""
    import torch

    path = Path(path)
    private_dirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with _open_private(tmp) as f:
        torch.save(state_dict, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_experiment(directory: str | os.PathLike, experiment) -> Path:
    d = private_dirs(directory)
    path = d / EXPERIMENT_FILE
    _atomic_write(path, cloudpickle.dumps(experiment))
    return path


def save_state(directory: str | os.PathLike, state: dict) -> Path:
    d = private_dirs(directory)
    path = d / f"round-{state['round']:06d}.ckpt"
    # cloudpickle: a custom Strategy subclass defined in a notebook must survive too.
    _atomic_write(path, cloudpickle.dumps({"format": FORMAT, **state}, protocol=5))
    return path


def latest(directory: str | os.PathLike) -> Path | None:
    found = sorted(
        (int(m.group(1)), p)
        for p in Path(directory).glob("round-*.ckpt")
        if (m := _ROUND_RE.search(p.name))
    )
    return found[-1][1] if found else None


def load(path: str | os.PathLike):
    """Return ``(experiment, state)`` from a checkpoint directory or one ``.ckpt`` file."""
    p = Path(path)
    ckpt = latest(p) if p.is_dir() else p
    if ckpt is None:
        raise FileNotFoundError(f"no round-*.ckpt checkpoint in {p}")
    with open(ckpt.parent / EXPERIMENT_FILE, "rb") as f:
        experiment = pickle.load(f)
    with open(ckpt, "rb") as f:
        state = pickle.load(f)
    if state.get("format") != FORMAT:
        raise ValueError(f"unsupported checkpoint format {state.get('format')!r}")
    return experiment, state

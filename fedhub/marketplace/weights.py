"""A model version's file, checked at publish: a PyTorch state dict (``.pt``/``.pth``) that
loads with ``torch.load(weights_only=True)``: names to tensors, nothing else.

``weights_only`` unpickles only tensors and plain containers, so the check never runs code
from the file; a full pickle (a whole ``nn.Module``, a custom class) is refused, as is
anything that is not a flat ``{name: tensor}`` mapping. torch is the ``fl`` extra's: a
marketplace service without it refuses models with a message saying so, rather than
storing a file nobody checked. What a model's ``schema`` records: its tensors (name,
shape, dtype) and its number of parameters, for the asset's card.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

from fedhub.marketplace.errors import BadAsset

SUFFIXES = (".pt", ".pth")
#: tensors listed in a schema (a larger model is described by its first ones and a count)
MAX_TENSORS = 500


def model_schema(filename: str, data: bytes) -> dict[str, Any]:
    """The state dict's tensors, or :class:`BadAsset` saying why the file is not one."""
    if not filename.lower().endswith(SUFFIXES):
        raise BadAsset(f"a model's file is a PyTorch state dict ({', '.join(SUFFIXES)})")
    try:
        import torch
    except ImportError:
        raise BadAsset(
            "this marketplace cannot check models (torch, the fl extra, is not installed), "
            "so it accepts none"
        ) from None
    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError,
            zipfile.BadZipFile, KeyError, AttributeError, TypeError) as e:  # fmt: skip
        # weights_only refuses anything but tensors and containers (UnpicklingError); a
        # truncated or foreign file fails in the zip reader or the unpickler
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BadAsset(
            f"{filename} does not load as a state dict with torch.load(weights_only=True): {first}"
        ) from None
    if not isinstance(state, Mapping) or not state:
        raise BadAsset(f"{filename} is not a state dict: save model.state_dict(), not the model")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise BadAsset(
                f"{filename} is not a flat state dict: {str(name)[:80]!r} is not a tensor "
                "(save model.state_dict())"
            )
    tensors = list(state.items())
    return {
        "format": "state_dict",
        "tensors": [
            {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for name, t in tensors[:MAX_TENSORS]
        ],
        "num_tensors": len(tensors),
        "parameters": int(sum(t.numel() for _, t in tensors)),
    }

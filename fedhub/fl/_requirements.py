"""Fails early, naming the extra, when fedhub.fl's dependencies are not installed."""

from fedhub.extras import needs_extra

with needs_extra("fl", "fedhub.fl (federated learning)"):
    import distributed  # noqa: F401
    import torch  # noqa: F401

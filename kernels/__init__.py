"""Kernel specs installed per tier (see README.md here). Shipped in the wheel as package
data of ``fedhub.kernels``; ``fedhub.extensions.hub.spawner.kernels`` finds them."""

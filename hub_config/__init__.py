"""Tier and deployment configuration: ``tiers.yaml`` (the bundled tiers) and the
production-style ``jupyterhub_config.py``. Shipped in the wheel as package data of
``fedhub.hub_config``; nothing here is meant to be imported."""

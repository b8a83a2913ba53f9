"""Notebooks shipped with fedhub: ``tutorials/``, ``dashboards/`` (Voila) and ``reports/``
(papermill). Shipped in the wheel as package data of ``fedhub.notebooks``."""

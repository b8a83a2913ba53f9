"""One module per kind of request; each registers its :class:`~fedhub.approvals.Kind`
when imported (:func:`fedhub.approvals.load_kinds` imports every module here)."""

"""Versioned JSON schemas of fedhub events (data files; see fedhub.events)."""

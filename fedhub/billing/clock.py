"""Billing's clock is the process clock, :mod:`fedhub.clock`; this name stays for its callers.

Tenancy records plan changes with the same clock, so the clock lives in the core, below both.
"""

from fedhub.clock import Clock, FixedClock, get_clock, set_clock

__all__ = ["Clock", "FixedClock", "get_clock", "set_clock"]

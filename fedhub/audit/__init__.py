"""fedhub's tamper-evident audit log (see docs/audit.md).

- :mod:`fedhub.audit.chain`: :class:`AuditLog`, the per-tenant hash chains,
  signed checkpoints, retention purges and crypto-shredding;
- :mod:`fedhub.audit.ingest`: delivery of spooled events, exactly once;
- :mod:`fedhub.audit.verify`: recompute and check every chain;
- :mod:`fedhub.audit.query`: filtered, paginated reads with personal fields decrypted.
"""

from fedhub.audit.chain import AuditLog
from fedhub.audit.models import PLATFORM

__all__ = ["AuditLog", "PLATFORM"]

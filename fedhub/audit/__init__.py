"""fedhub's tamper-evident audit log (see docs/audit.md).

- :mod:`fedhub.audit.chain`: :class:`AuditLog`, the per-tenant hash chains and
  signed checkpoints; :mod:`fedhub.audit.records`: what a record hash covers;
- :mod:`fedhub.audit.personal`: personal fields sealed per person; :mod:`fedhub.audit.retention`:
  retention purges and crypto-shredding;
- :mod:`fedhub.audit.ingest`: delivery of spooled events, exactly once;
- :mod:`fedhub.audit.verify`: recompute and check every chain;
- :mod:`fedhub.audit.query`: filtered, paginated reads with personal fields decrypted.
"""

from fedhub.audit.chain import AuditLog
from fedhub.audit.models import PLATFORM

__all__ = ["AuditLog", "PLATFORM"]

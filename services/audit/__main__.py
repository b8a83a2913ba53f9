"""``python -m fedhub.services.audit``: the audit service (run by the hub)."""

from fedhub.services.audit.app import main

if __name__ == "__main__":
    main()

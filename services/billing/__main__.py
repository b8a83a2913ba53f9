"""``python -m fedhub.services.billing``: the billing service (run by the hub)."""

from fedhub.services.billing.app import main

if __name__ == "__main__":
    main()

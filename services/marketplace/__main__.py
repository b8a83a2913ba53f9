"""``python -m fedhub.services.marketplace``: the marketplace service (run by the hub)."""

from fedhub.services.marketplace.app import main

if __name__ == "__main__":
    main()

"""``python -m fedhub.services.experiments``: run the service (the hub starts it)."""

from fedhub.services.experiments.app import main

if __name__ == "__main__":
    main()

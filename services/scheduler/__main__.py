"""``python -m fedhub.services.scheduler``: run the service (the hub starts it)."""

from fedhub.services.scheduler.app import main

if __name__ == "__main__":
    main()

"""``python -m fedhub.limits --markdown``: the registry as the table in docs/quotas.md."""

from fedhub.limits import main

main()

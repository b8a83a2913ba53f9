"""fedhub's JupyterHub services: billing, audit, marketplace, experiments, scheduler."""

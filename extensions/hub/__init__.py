"""JupyterHub plug-ins: tenant-aware authenticators, the tenant mirror and the tier spawner."""

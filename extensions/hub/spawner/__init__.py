"""The tier spawner's parts: profiles and the spawn form, local resource limits,
tier kernels, the tenant's measured storage, the run-time reconciler and its metrics. The spawner class itself
is :class:`fedhub.extensions.hub.tier_spawner.TierSpawner`."""

"""Deploying fedhub beyond one machine: the Helm values of a Kubernetes deployment (:mod:`.helm`)."""

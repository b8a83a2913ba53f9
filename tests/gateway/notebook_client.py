"""What a notebook in alice's server does, run with only her server's environment.

``Gateway()`` takes no arguments: the address, the proxy address and the auth type come
from the DASK_GATEWAY__* variables the spawner set, the token from JUPYTERHUB_API_TOKEN.
Prints one JSON line per step; after the last it waits for a line on stdin before it
shuts the cluster down (the test looks at the running cluster meanwhile).
"""

import json
import os
import sys


def say(**fields):
    print(json.dumps(fields), flush=True)


def refusal(call):
    try:
        call()
    except ValueError as e:  # dask_gateway's client raises ValueError for a 422
        return str(e)
    return None


if __name__ == "__main__":
    from dask_gateway import Gateway

    gateway = Gateway()
    options = gateway.cluster_options()
    say(step="options", options=dict(options), address=gateway.address)
    cluster = gateway.new_cluster(options)
    maximum = int(sys.argv[1])
    cluster.scale(maximum)
    client = cluster.get_client()
    client.wait_for_workers(maximum, timeout=90)
    say(
        step="running",
        cluster=cluster.name,
        workers=client.run(os.getpid),
        worker_uids=client.run(os.getuid),
        scheduler=client.run_on_scheduler(os.getpid),
        scratch=client.run(lambda dask_worker: dask_worker.local_directory),
    )
    say(
        step="refusals",
        scale=refusal(lambda: cluster.scale(maximum + 1)),
        second_cluster=refusal(lambda: gateway.new_cluster()),
        listed=[c.name for c in gateway.list_clusters()],
    )
    sys.stdin.readline()
    client.close()
    cluster.shutdown()
    say(step="stopped", left=[c.name for c in gateway.list_clusters()])

"""A tenant's own account: the one its gateway clusters, dataset store and workers use."""

from fedhub import accounts
from fedhub.gateway.processes import AccountProcesses


def test_tenant_account_is_never_a_users_account():
    prefix = accounts.ACCOUNT_PREFIX
    assert accounts.tenant_account("acme") == prefix[:-1] + "_t_acme"
    # a hub user called "t_acme" keeps the dash of the user prefix
    assert accounts.tenant_account("acme") != accounts.account_name("t_acme")
    long = "x" * 40
    assert len(accounts.tenant_account(long)) <= accounts.MAX_ACCOUNT_NAME
    assert accounts.tenant_account(long) != accounts.tenant_account(long + "y")


def test_gateway_tenant_clusters_use_the_same_account():
    backend = AccountProcesses()
    assert backend.tenant_account_prefix == accounts.TENANT_ACCOUNT_PREFIX

    class Cluster:
        username = "service:experiments"
        options = {"tenant": "acme"}

    assert backend.cluster_account(Cluster()) == accounts.tenant_account("acme")

"""Route 3 (spawner side): a hub user fedhub does not know gets no server.

Before, the tier spawner treated a user without a membership like a platform
admin: any profile of the catalogue (a GPU server), no reservation, no metering.
"""

from __future__ import annotations

import uuid


def test_hub_user_without_membership_gets_no_server(hub):
    admin = hub.token("admin")
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    # a platform admin may create hub users directly; fedhub has no membership for them
    assert hub.api("POST", f"/hub/api/users/{ghost}", admin).status_code == 201
    r = hub.api("POST", f"/hub/api/users/{ghost}/server", admin, json={"profile": "gpu"})
    assert r.status_code == 403, r.text
    assert "not a member of any organisation" in r.json()["message"]
    r = hub.api("POST", f"/hub/api/users/{ghost}/server", admin, json={})
    assert r.status_code == 403, r.text
    model = hub.api("GET", f"/hub/api/users/{ghost}", admin).json()
    assert model["servers"] == {}
    hub.api("DELETE", f"/hub/api/users/{ghost}", admin)


def test_platform_admin_is_explicit_and_still_gets_a_server(hub):
    admin = hub.token("admin")
    r = hub.api("POST", "/hub/api/users/admin/server", admin, json={})
    assert r.status_code in (201, 202), r.text
    hub.api("DELETE", "/hub/api/users/admin/server", admin)

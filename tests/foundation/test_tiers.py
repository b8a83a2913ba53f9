"""tiers.yaml is validated on load; every error names the file, the tier and the key."""

import subprocess
import sys

import pytest
import yaml

from fedhub.errors import ConfigError
from fedhub.tiers import DEFAULT_TIERS_PATH, load_tiers


@pytest.fixture
def tiers_doc():
    return yaml.safe_load(DEFAULT_TIERS_PATH.read_text())


def write(tmp_path, doc):
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_bundled_tiers_load():
    catalog = load_tiers()
    assert catalog.names() == ["free", "starter", "professional", "enterprise"]
    pro = catalog.get("professional")
    assert pro.monthly_price == 499 and pro.compute_hours_per_month == 500
    assert set(pro.profiles) <= set(catalog.profiles)
    # prices and quotas grow with the tier
    prices = [catalog.get(t).monthly_price for t in catalog.names()]
    assert prices == sorted(prices)


@pytest.mark.parametrize(
    ("tier", "key", "value", "expected"),
    [
        ("starter", "max_userz", 3, "unknown key"),
        ("starter", "max_users", "many", "valid integer"),
        ("free", "storage_gb", -1, "greater than or equal to 0"),
        ("enterprise", "api_calls_per_day", -5, "greater than or equal to 0"),
        ("professional", "profiles", ["small", "huge"], "unknown profile 'huge'"),
        ("free", "features", {"sso": "maybe"}, "valid boolean"),
    ],
)
def test_invalid_tier_names_file_tier_and_key(tmp_path, tiers_doc, tier, key, value, expected):
    tiers_doc["tiers"][tier][key] = value
    path = write(tmp_path, tiers_doc)
    with pytest.raises(ConfigError) as info:
        load_tiers(path)
    message = info.value.message
    assert str(path) in message
    assert f"tier '{tier}'" in message
    assert key in message
    assert expected in message


def test_missing_quota_is_an_error(tmp_path, tiers_doc):
    del tiers_doc["tiers"]["starter"]["max_users"]
    with pytest.raises(ConfigError, match=r"tier 'starter', key 'max_users': Field required"):
        load_tiers(write(tmp_path, tiers_doc))


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "tiers.yaml"
    path.write_text("tiers:\n  free: [unclosed\n")
    with pytest.raises(ConfigError, match=r"tiers.yaml: line \d+ invalid YAML"):
        load_tiers(path)


def test_overrides_are_validated_and_merged():
    catalog = load_tiers()
    tier = catalog.effective("starter", {"max_users": 40, "features": {"sso": True}})
    assert tier.max_users == 40 and tier.features.sso and not tier.features.gpu
    with pytest.raises(ConfigError, match="max_users"):
        catalog.effective("starter", {"max_users": -1})


def test_cli_validate_reports_one_line_and_exits_non_zero(tmp_path, tiers_doc):
    tiers_doc["tiers"]["starter"]["max_users"] = -3
    path = write(tmp_path, tiers_doc)
    r = subprocess.run(
        [sys.executable, "-m", "fedhub.cli", "tiers", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"Error: {path}: tier 'starter', key 'max_users': Input should be greater than or equal to 0"
    ]
    ok = subprocess.run(
        [sys.executable, "-m", "fedhub.cli", "tiers", "validate"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "4 tiers" in ok.stdout


@pytest.mark.slow
def test_broken_tiers_stop_hub_start_up(tmp_path, tiers_doc):
    tiers_doc["tiers"]["professional"]["experiments_per_month"] = -1
    path = write(tmp_path, tiers_doc)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedhub.cli",
            "--state-dir",
            str(tmp_path / "state"),
            "up",
            "--demo",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "FEDHUB_TIERS": str(path)},
    )
    assert r.returncode != 0
    assert f"{path}: tier 'professional', key 'experiments_per_month'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("tier", "security", "key", "expected"),
    [
        ("enterprise", {"password": {"min_length": 6}}, "security.password.min_length", ">= 8"),
        ("starter", {"password": {"character_classes": 5}}, "character_classes", "<= 4"),
        ("professional", {"password": {"history": 30}}, "security.password.history", "<= 24"),
        ("free", {"password": {"max_age_days": -1}}, "max_age_days", ">= 0"),
        ("free", {"sessions": {"idle_minutes": -5}}, "security.sessions.idle_minutes", ">= 0"),
        ("starter", {"mfa_required": "sometimes"}, "security.mfa_required", "valid boolean"),
        ("starter", {"mfa": True}, "security.mfa", "unknown key"),
    ],
)
def test_invalid_security_policy_names_file_tier_and_key(
    tmp_path, tiers_doc, tier, security, key, expected
):
    tiers_doc["tiers"][tier]["security"] = security
    path = write(tmp_path, tiers_doc)
    with pytest.raises(ConfigError) as info:
        load_tiers(path)
    message = info.value.message
    assert str(path) in message and f"tier '{tier}'" in message
    assert key in message
    assert (
        expected.replace(">= ", "greater than or equal to ").replace(
            "<= ", "less than or equal to "
        )
        in message
    )


def test_security_policy_grows_with_the_tier():
    catalog = load_tiers()
    policies = [catalog.get(t).security for t in catalog.names()]
    lengths = [p.password.min_length for p in policies]
    assert lengths == sorted(lengths) and lengths[0] == 8
    assert [p.mfa_required for p in policies] == [False, False, False, True]
    assert [p.ip_allowlist for p in policies] == [False, False, True, True]
    enterprise = catalog.get("enterprise").security
    assert (enterprise.password.history, enterprise.password.max_age_days) == (10, 90)
    assert (enterprise.sessions.idle_minutes, enterprise.sessions.absolute_hours) == (60, 12)


def test_a_tenant_override_of_one_password_rule_keeps_the_others():
    catalog = load_tiers()
    tier = catalog.effective("enterprise", {"security": {"password": {"min_length": 20}}})
    assert tier.security.password.min_length == 20
    assert tier.security.password.history == 10 and tier.security.mfa_required
    with pytest.raises(ConfigError, match=r"security.password.min_length"):
        catalog.effective("enterprise", {"security": {"password": {"min_length": 4}}})

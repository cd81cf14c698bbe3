"""The settings table: what each variable takes, and the README, .env.example and the resources
agreeing with it."""

from __future__ import annotations

import re

import pytest
from dagster import EnvVar

from crypto_assets import definitions
from crypto_assets.settings import BY_NAME, SETTINGS, markdown_table, resource_config, value
from support import REPO


@pytest.mark.parametrize("text, expected", [("", 250), ("  ", 250), ("600", 600), ("all", None), (" ALL ", None)])
def test_the_coins_limit_takes_a_number_or_all(monkeypatch, text, expected):
    monkeypatch.setenv("CRYPTO_COINS_LIMIT", text)
    assert value("CRYPTO_COINS_LIMIT") == expected


@pytest.mark.parametrize(
    "name, text, says",
    [
        ("CRYPTO_COINS_LIMIT", "every", "a whole number from 1 to 10000 or 'all'"),
        ("CRYPTO_COINS_LIMIT", "0", "a whole number from 1 to 10000 or 'all'"),
        ("COINGECKO_PLAN", "enterprise", "'demo' or 'pro'"),
        ("COINGECKO_CALLS_PER_MINUTE", "-5", "a number above 0"),
        ("COINGECKO_BASE_URL", "api.coingecko.com", "an http(s) URL"),
        ("CRYPTO_SLICE_HOURS", "1.5", "a whole number of at least 1"),
        ("CRYPTO_MAX_HOURS_PER_RUN", "a year", "a whole number of at least 1"),
        ("SPARK_DRIVER_MEMORY", "2 GB", "a JVM size such as 2g or 512m"),
        ("SPARK_REMOTE", "localhost:15002", "a Spark Connect URL (sc://host:port)"),
        ("CRYPTO_PARTITIONS_START", "2026-01-01", "an hour as YYYY-MM-DD-HH:00"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_takes(monkeypatch, name, text, says):
    monkeypatch.setenv(name, text)
    with pytest.raises(ValueError, match=re.escape(f"{name} must be {says}, not {text!r}")):
        value(name)


def test_a_set_secret_reaches_its_resource_as_an_env_var_and_the_rest_as_values(monkeypatch):
    monkeypatch.setenv("COINGECKO_API_KEY", "CG-secret-key")
    monkeypatch.setenv("COINGECKO_PLAN", "Pro")
    config = resource_config("coingecko")
    assert config["api_key"] == EnvVar("COINGECKO_API_KEY") and "CG-secret-key" not in repr(config)
    assert config["plan"] == "pro" and config["coins_limit"] == 250


def test_every_setting_that_names_a_field_configures_a_field_of_that_resource():
    named = {setting.field for setting in SETTINGS if setting.field}
    for resource, field in named:
        assert field in type(definitions.resources[resource]).model_fields, (resource, field)
    # a default is written twice (the table, for the README; the field, for code that builds the
    # resource itself): the two must agree
    for setting in SETTINGS:
        if setting.field:
            declared = type(definitions.resources[setting.field[0]]).model_fields[setting.field[1]]
            assert declared.default == setting.default, setting.name
    assert {resource for resource, _ in named} == set(definitions.resources)


def test_the_readme_table_is_the_settings_table():
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme, "README's configuration table differs: python -m crypto_assets.settings"


def test_env_example_names_every_deployment_setting_and_no_test_hook():
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    deployment = {setting.name for setting in SETTINGS if setting.deployment}
    assert deployment <= names, deployment - names
    assert not {setting.name for setting in SETTINGS if not setting.deployment} & names
    for name in deployment & names:  # the values .env.example ships are ones the setting takes
        line = re.search(rf"^{name}=(.*)$", (REPO / ".env.example").read_text(), re.M).group(1).strip('"')
        if line and "${" not in line:
            BY_NAME[name].parse(line)

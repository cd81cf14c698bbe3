"""Reading the environment: empty means unset, numbers are checked, named values are words."""

from __future__ import annotations

import pytest

from crypto_assets.settings import number_env


@pytest.mark.parametrize("value, expected", [("", 250), ("  ", 250), ("600", 600), ("all", None), (" ALL ", None)])
def test_the_coins_limit_takes_a_number_or_all(monkeypatch, value, expected):
    monkeypatch.setenv("CRYPTO_COINS_LIMIT", value)
    assert number_env("CRYPTO_COINS_LIMIT", 250, words={"all": None}) == expected


def test_a_value_that_is_neither_names_the_variable_and_what_it_takes(monkeypatch):
    monkeypatch.setenv("CRYPTO_COINS_LIMIT", "every")
    with pytest.raises(ValueError, match=r"CRYPTO_COINS_LIMIT must be a whole number or 'all', not 'every'"):
        number_env("CRYPTO_COINS_LIMIT", 250, words={"all": None})

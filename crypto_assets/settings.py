"""Reading the environment (DESIGN §5): one rule for every variable, one error for bad numbers.

An empty value counts as unset, so docker-compose's `${VAR:-}` and a blank line in `.env`
give the default instead of a crash.
"""

from __future__ import annotations

import os


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def number_env(name: str, default, kind=int, what: str = "number", words: dict | None = None):
    """A numeric setting, with an error naming the variable when it does not parse; ``words``
    are the non-numeric values it also takes (``{"all": None}``), case aside."""
    value = env(name)
    if value is None:
        return default
    if words and value.lower() in words:
        return words[value.lower()]
    try:
        return kind(value)
    except ValueError:
        whole = "whole " if kind is int else ""
        alternatives = "".join(f" or {word!r}" for word in words or ())
        raise ValueError(f"{name} must be a {whole}{what}{alternatives}, not {value!r}") from None

"""Every environment variable the platform reads, in one table (docs/design.md §5).

Each setting has its name, its default, a parser that says what it takes and a description;
the README's configuration table is this table (``python -m crypto_assets.settings`` prints it
and a test compares the two). ``definitions.py`` builds the resources from the settings that
name a resource field, so no other module reads the environment. An empty value counts as
unset, so docker-compose's ``${VAR:-}`` and a blank line in ``.env`` give the default instead
of a crash. Secrets reach Dagster as ``EnvVar``s: it reads them at run time and never shows them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from dagster import EnvVar

DEFAULT_ODBC = "DRIVER={SQLite3};Database=./data/warehouse.sqlite;BigInt=1"
# The object stores' own variables (delta-rs and obstore read them) and which of them are secrets.
STORE_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_")
_SECRET_NAME = re.compile(r"SECRET|KEY|TOKEN|PASSWORD|CREDENTIAL|SAS", re.IGNORECASE)


class Parser:
    """Turns a variable's text into its value; ``what`` completes "NAME must be …"."""

    def __init__(self, what: str, convert: Callable[[str], Any]):
        self.what, self.convert = what, convert

    def __call__(self, text: str) -> Any:
        return self.convert(text)


def text(what: str = "a text") -> Parser:
    return Parser(what, lambda value: value)


def whole(minimum: int, maximum: Optional[int] = None, words: Optional[dict[str, Any]] = None) -> Parser:
    """A whole number in [minimum, maximum], or one of ``words`` (case aside)."""
    bounds = f" from {minimum} to {maximum}" if maximum is not None else f" of at least {minimum}"
    what = f"a whole number{bounds}" + "".join(f" or {word!r}" for word in words or ())

    def convert(value: str) -> Any:
        if words and value.lower() in words:
            return words[value.lower()]
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ValueError(value)
        return number

    return Parser(what, convert)


def positive() -> Parser:
    def convert(value: str) -> float:
        number = float(value)
        if not number > 0:
            raise ValueError(value)
        return number

    return Parser("a number above 0", convert)


def one_of(*choices: str) -> Parser:
    def convert(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(value)
        return value.lower()

    return Parser(" or ".join(repr(choice) for choice in choices), convert)


def matching(pattern: str, what: str) -> Parser:
    def convert(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(value)
        return value

    return Parser(what, convert)


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any  # the value when unset
    description: str
    parse: Parser = text()
    field: Optional[tuple[str, str]] = None  # (resource key, field) it configures
    secret: bool = False  # passed as an EnvVar, never shown or logged
    shown_default: Optional[str] = None  # the README's default column, when not the value itself
    deployment: bool = True  # False: read by the demo or the tests only, not in .env.example

    def raw(self) -> Optional[str]:
        return os.environ.get(self.name, "").strip() or None

    def value(self) -> Any:
        """The parsed value, or the default when unset; a bad value names the variable."""
        raw = self.raw()
        if raw is None:
            return self.default
        try:
            return self.parse(raw)
        except ValueError:
            raise ValueError(f"{self.name} must be {self.parse.what}, not {raw!r}") from None

    def configured(self) -> Any:
        """What a resource field gets: an EnvVar for a set secret, else the value."""
        return EnvVar(self.name) if self.secret and self.raw() else self.value()

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        return "unset" if self.default is None else f"`{self.default}`"


_HOURS = whole(1)
SETTINGS: tuple[Setting, ...] = (
    Setting("COINGECKO_API_KEY", None, "API key, sent only as a header", field=("coingecko", "api_key"), secret=True),
    Setting(
        "COINGECKO_PLAN", "demo", "`demo` or `pro` (host, header, rate limit)", one_of("demo", "pro"),
        ("coingecko", "plan"),
    ),
    Setting(
        "COINGECKO_BASE_URL", None, "API root override (the simulator, a proxy)", matching(r"https?://\S+", "an http(s) URL"),
        ("coingecko", "base_url"), shown_default="the plan's host",
    ),
    Setting(
        "COINGECKO_CALLS_PER_MINUTE", None, "client-side rate limit", positive(), ("coingecko", "calls_per_minute"),
        shown_default="30 (demo), 500 (pro)",
    ),
    Setting(
        "CRYPTO_COINS_LIMIT", 250,
        "coins per hour, by market cap, or `all` (every coin `/coins/markets` lists, 250 a page to the end)",
        whole(1, 10000, words={"all": None}), ("coingecko", "coins_limit"),
    ),
    Setting(
        "CRYPTO_LAKE_ROOT", "./data/lake",
        "lakehouse root: a folder, `file://…`, `s3://bucket/prefix`, `az://container/prefix`, "
        "`abfss://container@account.dfs.core.windows.net/prefix` or `gs://bucket/prefix` (endpoints and "
        "credentials from the store's own `AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_*` variables)",
        field=("lakehouse", "root"),
    ),
    Setting(
        "CRYPTO_SLICE_HOURS", 744,
        "a long window is computed, checked and committed at most this many hours at a time (a month: sparse "
        "history goes in few slices; the driver holds one slice)",
        _HOURS, ("lakehouse", "slice_hours"),
    ),
    Setting(
        "CRYPTO_SLICE_ROWS", 50_000,
        "and at most this many rows of the table it reads (Gold three times as many: each of its slices reads the "
        "week before it again; an hour holding more is a slice of its own): a slice's memory, the same at 1,000 "
        "coins or every coin",
        whole(1), ("lakehouse", "slice_rows"),
    ),
    Setting(
        "CRYPTO_MAX_HOURS_PER_RUN", 24 * 366, "the largest window one run accepts (a guard against mistakes)",
        _HOURS, ("lakehouse", "max_hours_per_run"),
    ),
    Setting(
        "CRYPTO_VACUUM_RETENTION_HOURS", 168,
        "how long the daily upkeep keeps old Delta versions (the default of its run config's `vacuum_retention_hours`)",
        whole(0),
    ),
    Setting(
        "CRYPTO_WAREHOUSE_ODBC", DEFAULT_ODBC, "ODBC connection string of the SQL sink",
        field=("warehouse", "odbc_connection_string"), secret=True,
    ),
    Setting("SPARK_MASTER", "local[*]", "Spark master URL", field=("spark", "master")),
    Setting(
        "SPARK_REMOTE", None, "Spark Connect URL (`sc://host:15002`); wins over `SPARK_MASTER`",
        matching(r"sc://\S+", "a Spark Connect URL (sc://host:port)"), ("spark", "remote"),
    ),
    Setting(
        "SPARK_DRIVER_MEMORY", "512m",
        "the driver JVM's heap (in local mode it runs the executors too): most of a run's peak memory",
        matching(r"(?i)\d+[kmgt]", "a JVM size such as 2g or 512m"), ("spark", "driver_memory"),
    ),
    Setting(
        "SPARK_QUICK_JIT_HOURS", 24,
        "runs of at most this many hours compile with the JVM's quick compiler only (seconds off a short run; a long backfill needs the optimising one); longer runs also keep the driver's heap lean; 0: never",
        whole(0), ("spark", "quick_jit_hours"),
    ),
    Setting(
        "CRYPTO_PARTITIONS_START", "2026-01-01-00:00", "first hourly partition (UTC)",
        matching(r"\d{4}-\d{2}-\d{2}-\d{2}:00", "an hour as YYYY-MM-DD-HH:00"),
    ),
    Setting(
        "CRYPTO_ALERT_WEBHOOK_URL", None, "Slack-compatible webhook for every alert (failed runs and checks, stale tables, missed schedule ticks)",
        field=("alert_webhook", "url"), secret=True, shown_default="unset (alerts only logged)",
    ),
    Setting(
        "CRYPTO_DAGSTER_UI_URL", None, "the UI's address, for links in alerts",
        matching(r"https?://\S+", "an http(s) URL"), ("alert_webhook", "ui_url"),
    ),
    Setting(
        "CRYPTO_ALERT_WARNINGS", "daily",
        "failing warning checks alerted: `off`, `daily` (the first failure of each check per UTC day) or `every`",
        one_of("off", "daily", "every"), ("alert_webhook", "warnings"),
    ),
    Setting("CRYPTO_DEMO_DATA", "./data", "where `make demo` keeps its lake, warehouse and Dagster home", deployment=False),
    Setting(
        "CRYPTO_PAUSE_AT", None, "test hook: a run reaching this crash point (`crypto_assets/crashpoints.py`) waits there",
        deployment=False,
    ),
    Setting(
        "CRYPTO_PAUSE_MARKER", "crypto-paused", "test hook: the file a paused run writes", deployment=False,
    ),
)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}


def value(name: str) -> Any:
    return BY_NAME[name].value()


def resource_config(resource: str) -> dict[str, Any]:
    """The fields of one resource that settings configure, as the resource's keyword arguments."""
    return {
        setting.field[1]: setting.configured() for setting in SETTINGS if setting.field and setting.field[0] == resource
    }


def store_secrets(prefixes: tuple[str, ...] = STORE_PREFIXES) -> list[str]:
    """Values of the object stores' variables that are secrets (keys, tokens), to mask in messages."""
    return [
        value
        for name, value in os.environ.items()
        if name.startswith(prefixes) and _SECRET_NAME.search(name) and len(value) >= 4
    ]


def secret_values() -> list[str]:
    """The values of every secret in the environment, ours and the stores', to mask in messages."""
    ours = [setting.raw() or "" for setting in SETTINGS if setting.secret]
    return [value for value in ours if len(value) >= 4] + store_secrets()


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| variable | meaning | default |", "| --- | --- | --- |"]
    lines += [f"| `{s.name}` | {s.description} | {s.default_text()} |" for s in SETTINGS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())

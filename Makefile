# One command runs the pipeline (`make demo`), one tests it (`make test`). Every target
# installs what it needs first; `make setup` is idempotent and skips what is present.

VENV        ?= .venv
PY          := $(VENV)/bin/python
DAGSTER     := $(VENV)/bin/dagster
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
# `make ui`'s webserver creates runs without importing the package: one planned event per asset
# for a range run, as crypto_assets/definitions.py sets for the processes that do.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true
# unixODBC plus the SQLite3, PostgreSQL, FreeTDS and MariaDB ODBC drivers (registered in /etc/odbcinst.ini).
OS_PACKAGES := unixodbc libsqliteodbc odbc-postgresql tdsodbc odbc-mariadb
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Azurite (Azure Blob emulator) for the object-storage tests, from npm into a project folder.
AZURITE     := .tools/node/node_modules/.bin/azurite-blob
AZURITE_VERSION := 3.35.0

.PHONY: setup system spark-classes demo test lint fmt run ui dashboard bench clean

setup: system $(VENV)/.installed $(AZURITE) spark-classes

# OS packages: a Java 17+ runtime for Spark, unixODBC and its drivers, python3-venv (and, for
# the tests, Chromium).
system:
	@missing=""; \
	for pkg in $(OS_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	java_major=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1); \
	if [ -z "$$java_major" ] || [ "$$java_major" -lt 17 ]; then missing="$$missing default-jre-headless"; fi; \
	python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "Installing OS packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi; \
	java -version 2>&1 | head -n1; odbcinst -q -d | tr '\n' ' '; echo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The archive of Spark's classes every run's JVM maps (seconds off each start); remade only when
# Java or pyspark changed (crypto_assets/resources/spark_classes.py).
spark-classes: system $(VENV)/.installed
	$(PY) -m crypto_assets.resources.spark_classes

$(AZURITE):
	npm install --silent --no-audit --no-fund --prefix .tools/node azurite@$(AZURITE_VERSION)

# The offline demo: 3 past hours (history backfill) and the current hour against the simulator.
demo: setup
	$(PY) -m crypto_assets.demo

# The tests also drive the Dagster UI in Debian's headless Chromium.
test: OS_PACKAGES += chromium chromium-driver
test: setup lint
	$(PY) -m pytest

# ruff: lint (pyflakes' defects, sorted imports) and the formatter's style; mypy: the package's
# types (pyproject.toml says what and how strictly). CI enforces all three.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The current hour from the live CoinGecko API (set COINGECKO_API_KEY, COINGECKO_PLAN).
run: setup
	$(PY) -m crypto_assets.local_instance "$(DAGSTER_HOME)"
	$(DAGSTER) asset materialize -m crypto_assets.definitions --select '*' \
		--partition $$($(PY) -m crypto_assets.partitions) \
		--config-json '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'

# The Dagster UI on http://127.0.0.1:3000 (schedules run while it is up).
ui: setup
	$(PY) -m crypto_assets.local_instance "$(DAGSTER_HOME)"
	$(DAGSTER) dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The warehouse dashboard on http://127.0.0.1:8501 (after `make demo`; CRYPTO_WAREHOUSE_ODBC picks another
# warehouse, DASHBOARD_PORT another port). Read-only: SQLite opened read-only, servers as crypto_reader.
dashboard: setup
	$(PY) -m crypto_assets.dashboard --port $${DASHBOARD_PORT:-8501}

bench: setup
	$(PY) -m benchmarks.pipeline
	$(PY) -m benchmarks.warehouse_load
	$(PY) -m benchmarks.pruning
	$(PY) -m benchmarks.spark_start
	$(PY) -m benchmarks.scaleout
	$(PY) -m benchmarks.scale

clean:
	rm -rf data

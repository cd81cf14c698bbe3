# The user-code image: the crypto_assets package and everything a run needs — Java for Spark,
# unixODBC with its drivers for the warehouse. docker-compose.yml runs it as the gRPC code
# server (runs are launched as its subprocesses), the CoinGecko simulator and the Spark
# standalone master and worker (same Spark, same Python on driver and executors).
#
#   docker build -t crypto-assets/user-code .
#   docker build --build-arg INSTALL_MSODBC18=true -t crypto-assets/user-code .   # + Microsoft ODBC 18
#
# No secret is baked in: keys and passwords arrive as environment variables at run time.
FROM python:3.11-slim-bookworm

# Microsoft ODBC Driver 18 for SQL Server / Azure SQL needs its licence accepted, so it is
# opt-in; FreeTDS (tdsodbc, always installed) reaches SQL Server without it.
ARG INSTALL_MSODBC18=false

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

# A headless Java 17 for Spark; unixODBC with the SQLite3, PostgreSQL, FreeTDS and MariaDB drivers
# (each registers itself in /etc/odbcinst.ini); procps because Spark's scripts call ps.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless unixodbc libsqliteodbc odbc-postgresql tdsodbc odbc-mariadb procps \
 && if [ "$INSTALL_MSODBC18" = "true" ]; then \
        apt-get install -y --no-install-recommends curl gnupg ca-certificates \
     && curl -fsSL https://packages.microsoft.com/keys/microsoft.asc \
        | gpg --dearmor -o /usr/share/keyrings/microsoft-prod.gpg \
     && curl -fsSL https://packages.microsoft.com/config/debian/12/prod.list \
        -o /etc/apt/sources.list.d/mssql-release.list \
     && apt-get update \
     && ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 \
     && apt-get purge -y curl gnupg && apt-get autoremove -y; \
    fi \
 && rm -rf /var/lib/apt/lists/* \
 && odbcinst -q -d | tee /dev/stderr | grep -q '^\[SQLite3\]' \
 && odbcinst -q -d | grep -q '^\[PostgreSQL Unicode\]' \
 && odbcinst -q -d | grep -q '^\[FreeTDS\]' \
 && odbcinst -q -d | grep -q '^\[MariaDB Unicode\]' \
 && java -version

WORKDIR /opt/crypto_assets

# The dependencies first, exactly as pinned in pyproject.toml (this layer stays cached while
# only our code changes)...
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; o = p['optional-dependencies']; print('\n'.join(p['dependencies'] + o['deploy'] + o['spark-connect']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# ...then the package itself, from the repository (.dockerignore keeps data, venvs and .env out).
COPY . ./
RUN pip install '.[deploy,spark-connect]' \
 && python -c "import crypto_assets.definitions" \
 && python -m crypto_assets.resources.spark_classes

# The production instance, shared with the webserver and daemon image; it reads every
# connection setting from the environment.
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml

# An unprivileged user; the lakehouse and compute-log mount points are created here so named
# volumes inherit the ownership.
RUN useradd --create-home --uid 1000 dagster \
 && mkdir -p /data/lake /opt/dagster/logs /opt/dagster/app \
 && chown -R dagster:dagster /data/lake /opt/dagster
USER dagster
WORKDIR /opt/dagster/app

EXPOSE 4000
# The code location over gRPC (deploy/workspace.yaml points the webserver and daemon here).
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "crypto_assets.definitions", "--location-name", "crypto_assets"]

#!/bin/sh
# The code server's entrypoint: with neither SPARK_REMOTE nor SPARK_MASTER set, runs use the
# compose `connect` profile's Spark Connect server when its host name resolves (the profile is
# on), else the `spark` profile's cluster when its master's does; otherwise the settings decide
# (local[*] when unset). Then the command runs as given.
connect_host="${SPARK_CONNECT_HOST:-spark-connect}"
cluster_host="${SPARK_CLUSTER_HOST:-spark-master}"
if [ -z "${SPARK_MASTER:-}" ] && [ -z "${SPARK_REMOTE:-}" ]; then
  if getent hosts "$connect_host" >/dev/null 2>&1; then
    SPARK_REMOTE="sc://$connect_host:15002"
    export SPARK_REMOTE
    echo "compose connect profile: SPARK_REMOTE=$SPARK_REMOTE" >&2
  elif getent hosts "$cluster_host" >/dev/null 2>&1; then
    SPARK_MASTER="spark://$cluster_host:7077"
    export SPARK_MASTER
    echo "compose spark profile: SPARK_MASTER=$SPARK_MASTER" >&2
  fi
fi
exec "$@"

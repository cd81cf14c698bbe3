#!/bin/sh
# The code server's entrypoint: with the compose `spark` profile on (its master's host name
# resolves) and neither SPARK_MASTER nor SPARK_REMOTE set, runs use that cluster; otherwise
# the settings decide (local[*] when unset). Then the command runs as given.
cluster_host="${SPARK_CLUSTER_HOST:-spark-master}"
if [ -z "${SPARK_MASTER:-}" ] && [ -z "${SPARK_REMOTE:-}" ] && getent hosts "$cluster_host" >/dev/null 2>&1; then
  SPARK_MASTER="spark://$cluster_host:7077"
  export SPARK_MASTER
  echo "compose spark profile: SPARK_MASTER=$SPARK_MASTER" >&2
fi
exec "$@"

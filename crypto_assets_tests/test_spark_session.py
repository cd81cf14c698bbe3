"""The pipeline's Spark session (resources/spark.py) over a long run: the driver keeps a bounded
history of finished work, so its live heap does not grow with the number of slices, and its heap
stays near what it holds; and the JVM is stopped once a run's last Spark step is done, so the
steps after it run without its memory."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from crypto_assets.resources.spark import STATUS_RETAINED
from support import REPO


def test_the_driver_forgets_old_jobs_and_queries_so_a_long_run_does_not_fill_its_heap(spark):
    jobs, queries = (
        int(STATUS_RETAINED["spark.ui.retainedJobs"]),
        int(STATUS_RETAINED["spark.sql.ui.retainedExecutions"]),
    )
    for _ in range(jobs + 30):  # each a SQL query and a job, as a slice's are
        spark.range(3).selectExpr("sum(id)").collect()
    assert len(spark.sparkContext.statusTracker().getJobIdsForGroup(None)) <= jobs
    assert spark._jsparkSession.sharedState().statusStore().executionsCount() <= queries


# In a process of its own: the tests' shared session must not be the one stopped.
DONE_WITH = """
import json, os, time
from dagster import AssetKey, build_init_resource_context
from crypto_assets.resources.spark import SparkResource

def alive(pid):
    try:
        os.kill(pid, 0)
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False

resource = SparkResource(master="local[1]", spark_assets=["silver", "gold/trends"])
resource.setup_for_execution(build_init_resource_context())  # no run: every Spark asset is the run's
jvm = resource.spark_session.sparkContext._gateway.proc.pid
resource.done_with([AssetKey("silver")])
after_one = alive(jvm) and resource._spark_session is not None
resource.done_with([AssetKey(["gold", "trends"])])
deadline = time.monotonic() + 60  # it exits on its own, while the run's next step goes on
while alive(jvm) and time.monotonic() < deadline:
    time.sleep(0.1)
after_all = alive(jvm)
restarted = resource.spark_session.range(3).count()  # a later step would get a new JVM
resource.teardown_after_execution(None)
print(json.dumps({"after_one": after_one, "after_all": after_all, "restarted": restarted}))
"""


def test_the_session_stops_once_the_runs_last_spark_asset_is_done_and_not_before():
    done = subprocess.run(
        [sys.executable, "-c", DONE_WITH], cwd=REPO, capture_output=True, text=True, check=True, timeout=180
    )
    assert json.loads(done.stdout.splitlines()[-1]) == {"after_one": True, "after_all": False, "restarted": 3}


def test_a_graph_run_loads_the_warehouse_after_spark_has_stopped(reference_run):
    log = reference_run["run"].stdout + reference_run["run"].stderr
    stopped = [line.start() for line in re.finditer("Spark session stopped: no later step of this run uses it", log)]
    assert len(stopped) == 1, "stopped once, by the last Spark step"
    assert log.index('Started execution of step "gold_tables"') < stopped[0]
    assert stopped[0] < log.index('Started execution of step "warehouse_star_schema"')


LOCAL_READ = """
import json, subprocess, sys, tempfile
from datetime import datetime, timezone
import pyarrow as pa
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.resources.spark import SparkResource
from crypto_assets.tables import GOLD_OVERVIEW

hour = datetime(2026, 1, 1, tzinfo=timezone.utc)
lake = LakehouseResource(root=tempfile.mkdtemp())
rows = {field.name: [None] for field in GOLD_OVERVIEW.arrow_schema}
rows.update(ingest_hour=[hour], ingest_date=["2026-01-01"], vs_currency=["usd"], coins_tracked=[1])
lake.write_window(GOLD_OVERVIEW, pa.table(rows, schema=GOLD_OVERVIEW.arrow_schema), hour, hour.replace(hour=1), "run")
resource = SparkResource(master="local[1]")
spark = resource.spark_session
count = lake.read_window(spark, GOLD_OVERVIEW, hour, hour.replace(hour=1)).count()
jvm = spark.sparkContext._gateway.proc.pid
children = subprocess.run(["ps", "--ppid", str(jvm), "-o", "args="], capture_output=True, text=True).stdout
resource.teardown_after_execution(None)
print(json.dumps({"rows": count, "python_daemons": children.count("pyspark.daemon")}))
"""


def test_a_session_reading_a_local_lake_starts_no_python_workers():
    """Spark's Python data-source lookup (a daemon and a worker, 0.1 GB) starts only for the
    object-store reader, which the S3 and Azure tests exercise."""
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_READ], cwd=REPO, capture_output=True, text=True, check=True, timeout=180
    )
    assert json.loads(done.stdout.splitlines()[-1]) == {"rows": 1, "python_daemons": 0}


# In a process of its own: a JVM's heap options are fixed when it starts.
HEAP_AFTER_GC = """
import json, sys
from dagster import asset, materialize
from crypto_assets.partitions import HOUR, RANGE_TAGS, current_hour, hourly_partitions, partition_key
from crypto_assets.resources.spark import SparkResource

seen = {}

@asset(partitions_def=hourly_partitions)
def probe(spark: SparkResource) -> None:
    session = spark.spark_session
    for _ in range(5):  # garbage, as a slice's queries leave it
        session.range(2_000_000).selectExpr("id % 1000 as k", "id").groupBy("k").count().collect()
    session._jvm.java.lang.System.gc()
    runtime = session._jvm.java.lang.Runtime.getRuntime()
    total, free = runtime.totalMemory(), runtime.freeMemory()
    seen.update(heap_mb=total / 2**20, live_mb=(total - free) / 2**20)

last = current_hour()
hours = int(sys.argv[1])
tags = dict(zip(RANGE_TAGS, [partition_key(last - (hours - 1) * HOUR), partition_key(last)]))
assert materialize([probe], resources={"spark": SparkResource(master="local[1]")}, tags=tags).success
print(json.dumps(seen))
"""


def test_a_long_runs_driver_heap_stays_near_what_it_holds():
    """After a full collection the heap of a 25-hour run is at most 2.5 times its live objects (the
    JVM's default here: 365 MB for 58 MB, which a backfill's slices fill before it is collected)."""
    done = subprocess.run(
        [sys.executable, "-c", HEAP_AFTER_GC, "25"], cwd=REPO, capture_output=True, text=True, check=True, timeout=180
    )
    heap = json.loads(done.stdout.splitlines()[-1])
    assert heap["heap_mb"] <= 2.5 * heap["live_mb"], heap

"""The Spark session: one per run (the in-process executor runs every step in it), stopped after
the run's last Spark step.

Local mode by default, sized for the machine; ``SPARK_MASTER`` points it at a cluster
(``spark://``, ``k8s://``, ``yarn``) and ``SPARK_REMOTE`` at a Spark Connect server (``sc://``).
Nothing here or in the transforms uses ``sparkContext`` or RDDs, which Spark Connect does not
have. A session reading an object-store lake registers the data source that reads Delta snapshots
on the executors (``delta_source.py``); executors run ``PYSPARK_PYTHON``, by default this Python
(the project's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Iterable, Optional

from dagster import AssetKey, InitResourceContext, get_dagster_logger
from dagster_pyspark import LazyPySparkResource
from pydantic import Field, PrivateAttr

from crypto_assets.partitions import run_hours
from crypto_assets.resources import spark_classes

# A Dagster logger: inside a run its lines go to the run log (and the UI), outside to stderr.
log = get_dagster_logger("crypto_assets.spark")

# Spark's JVM logs at WARN by default; the run log wants our progress lines, not Spark's.
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


# Files a read looks up on the driver before Spark lists them in a job instead.
DRIVER_LISTS_FILES = 4096

# What the driver keeps of finished jobs, stages, tasks and SQL queries, for the UI and the
# status API, UI or not. Spark's defaults (1,000 jobs, stages and queries; 100,000 tasks a
# stage) are weeks of slices: after a year's backfill, 22,800 tasks' records and 57,000 SQL plan
# metrics were among the 250 MB still live after a full collection, growing with the window.
STATUS_RETAINED = {
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
    "spark.ui.retainedTasks": "2000",
    "spark.sql.ui.retainedExecutions": "50",
}

# A heap this small is collected by the serial collector: G1's own structures would add about a
# tenth of it to the driver's memory, and its concurrent threads buy nothing at this size (the
# JVM's own choice on a small machine). A user's own -XX:+Use…GC wins.
SMALL_HEAP = 2**30
SMALL_HEAP_GC = ["-XX:+UseSerialGC"]
NAMES_A_GC = re.compile(r"-XX:\+Use\w+GC\b")

# The JVM's quick compiler (C1) alone. A fresh JVM spends seconds of a short run's two cores in its
# optimising compiler (C2), which a run of seconds never earns back (one hour: 16.8 s tiered, 13.4 s
# with C1 alone), while a long backfill needs its code (744 hours: Gold 52 s tiered, 102 s without).
QUICK_JIT = "-XX:TieredStopAtLevel=1"
NAMES_A_JIT = re.compile(r"-XX:[+-]?(TieredStopAtLevel|TieredCompilation)\b")

# A long run's heap starts small and keeps at most 40 % of it free after a full collection, so it
# stays near what the driver holds. By default it starts at a 64th of the machine's memory (384 MB
# on 24 GB) and may stay 70 % free, and a backfill's slices fill all of it: 744 hours, the JVM at
# Silver's peak 858 -> 736 MB, for 9 s more collecting (37 full collections against 8). Keeping
# only 30 % free saved 17 MB more for 5 s more. A short run's heap never fills, and starting small
# would cost it young collections (one hour: about 8 % slower).
LEAN_HEAP = ["-Xms64m", "-XX:MinHeapFreeRatio=20", "-XX:MaxHeapFreeRatio=40"]
# How long a JVM let go may take to exit (its shutdown hooks) before the run's end kills it.
JVM_EXIT_SECONDS = 60
_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _heap_bytes(size: str) -> int:
    """A JVM size such as ``768m`` or ``2g`` in bytes (bytes when it has no unit)."""
    size = size.strip().lower()
    return int(size[:-1]) * _UNITS[size[-1]] if size[-1] in _UNITS else int(size)


def _local_jvm() -> Any:
    """The py4j gateway to this process's driver JVM, if one runs."""
    from pyspark import SparkContext

    return SparkContext._gateway


def _end_local_jvm() -> Optional[subprocess.Popen]:
    """Let this process's driver JVM exit, and return its process to reap; PySpark launches a new
    one for a later session. The JVM exits when its stdin closes (Spark's PythonGatewayServer),
    its Python workers with it."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return None
    SparkContext._gateway = SparkContext._jvm = None
    gateway.shutdown()
    process = getattr(gateway, "proc", None)
    if process is not None and process.stdin is not None:
        process.stdin.close()
    return process


class SparkResource(LazyPySparkResource):
    """A lazily started SparkSession: runs that touch no Spark asset start no JVM."""

    spark_config: dict[str, Any] = Field(default_factory=dict, description="Extra spark.* settings.")
    master: str = Field(default="local[*]", description="SPARK_MASTER: local[*], spark://host:7077, yarn, k8s://…")
    remote: Optional[str] = Field(
        default=None, description="SPARK_REMOTE: a Spark Connect URL (sc://host:15002); wins over master."
    )
    driver_memory: str = Field(
        default="512m",
        description="Driver heap in local mode (the executors live in it): a slice fits (CRYPTO_SLICE_ROWS).",
    )
    shuffle_partitions: int = Field(
        default=8, description="Hourly windows are small: Spark's 200 default is mostly overhead."
    )
    ui_enabled: bool = Field(default=False, description="Start Spark's web UI (port 4040+).")
    java_options: str = Field(default="", description="Extra options for the driver's JVM.")
    quick_jit_hours: int = Field(
        default=24,
        ge=0,
        description="SPARK_QUICK_JIT_HOURS: a run of at most this many hours compiles with the JVM's quick compiler "
        "only (0: never); a longer one uses both and keeps the driver's heap lean.",
    )
    class_archive: bool = Field(
        default=True, description="Map the archive of Spark's classes `make setup` makes (spark_classes.py)."
    )

    def _builder_config(self) -> dict[str, str]:
        config = self._session_config()
        if not self.remote:  # a Connect client may set only the session's runtime settings
            config = {**self._driver_config(), **config}
        return {**config, **{key: str(value) for key, value in self.spark_config.items()}}

    def _session_config(self) -> dict[str, str]:
        """The session's runtime settings (a Connect server's session takes them too)."""
        return {
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            # Each read names its files; Spark's shared cache of their statuses (250 MB by
            # default) only grew with the run: 21,800 files held over a year's backfill.
            "spark.sql.hive.filesourcePartitionFileCacheSize": "0",
            # A read naming more than 32 files (Spark's default) looked them up in a Spark job of
            # its own: 0.25-0.44 s a read, against 0.04-0.13 s on the driver (a Silver slice of a
            # 744-hour backfill names about 48 Bronze files; Gold's week of hourly Silver 170).
            "spark.sql.sources.parallelPartitionDiscovery.threshold": str(DRIVER_LISTS_FILES),
        }

    def _driver_config(self) -> dict[str, str]:
        """The driver's own settings, fixed when its JVM starts (a local or cluster session)."""
        return {
            "spark.app.name": "crypto_assets",
            "spark.ui.enabled": str(self.ui_enabled).lower(),
            "spark.driver.memory": self.driver_memory,
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.extraJavaOptions": " ".join(self._java_options()),
            **STATUS_RETAINED,
        }

    def _java_options(self) -> list[str]:
        options = [
            f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}",
            *(
                SMALL_HEAP_GC
                if _heap_bytes(self.driver_memory) <= SMALL_HEAP and not NAMES_A_GC.search(self.java_options)
                else []
            ),
            *([QUICK_JIT] if self._quick_jit() else []),
            *(LEAN_HEAP if self._long_run() else []),
            *([self.java_options] if self.java_options else []),  # the JVM takes an option's last value
        ]
        archive = self._archive()
        return [*options, spark_classes.java_options(archive)] if archive else options

    def _quick_jit(self) -> bool:
        """Whether this run is short enough for C1 alone (and the user chose no compiler of their own)."""
        short = self._run_hours is not None and self._run_hours <= self.quick_jit_hours
        return short and not NAMES_A_JIT.search(self.java_options)

    def _long_run(self) -> bool:
        """Whether this run is longer than a short one (its window known): the driver keeps a lean heap."""
        return self._run_hours is not None and self._run_hours > self.quick_jit_hours

    def _archive(self) -> Optional[Path]:
        return spark_classes.usable_archive() if self.class_archive and not self.remote else None

    spark_assets: list[str] = Field(
        default_factory=list,
        description="Asset keys (user strings) computed with Spark. A run selecting any of them starts the "
        "session and warms it up in the background from the run's start, while the steps before them run (not "
        "once a step waits for it: that step's own query warms it up); once the run's last of them is done "
        "(``done_with``), the session stops, so the steps after them run without the JVM's memory.",
    )
    _starting: Optional[Future] = PrivateAttr(default=None)
    _run_hours: Optional[int] = PrivateAttr(default=None)  # the run's window, from its tags
    # Set once a step asks for the session: a warm-up not yet begun would only delay it.
    _wanted: threading.Event = PrivateAttr(default_factory=threading.Event)
    # The run's Spark assets not done yet (every one of them when the run names no assets).
    _pending: set[str] = PrivateAttr(default_factory=set)
    _own_jvm: bool = PrivateAttr(default=False)  # the driver's JVM was started for this resource
    _ending: list[subprocess.Popen] = PrivateAttr(default_factory=list)  # JVMs let go, to reap

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._run_hours = run_hours(context.dagster_run.tags) if context.dagster_run else None
        selection = context.dagster_run.asset_selection if context.dagster_run else None
        wanted = set(self.spark_assets)
        self._pending = wanted if selection is None else wanted & {key.to_user_string() for key in selection}
        if self._pending:
            pool = ThreadPoolExecutor(1, thread_name_prefix="spark-start")
            self._starting = pool.submit(self._start_warm)
            pool.shutdown(wait=False)

    def _start_warm(self) -> list[str]:
        """Start and warm up the session in the background; what to log, for the step that asks for
        it (a line logged outside a step, before the first one, would reach no run log)."""
        from crypto_assets.warm_up import warm_up

        notes = [self._start()]
        if self._wanted.is_set():  # a step is already waiting: its own query warms the JVM up
            return notes
        started = time.monotonic()
        warm_up(self._spark_session)
        return [*notes, f"Spark warmed up in the background in {time.monotonic() - started:.1f} s"]

    def _init_session(self) -> None:
        self._wanted.set()
        notes = []
        if self._starting is not None:
            starting, self._starting = self._starting, None
            notes = starting.result()  # a failed start fails the step that needs Spark, with its own error
        if self._spark_session is None:
            notes.append(self._start())
        for note in notes:
            log.info(note)

    def _start(self) -> str:
        """Start the session; a line saying how."""
        from pyspark.sql import SparkSession

        started = time.monotonic()
        self._own_jvm = not self.remote and _local_jvm() is None  # not one the process already had
        if self.remote:
            builder = SparkSession.builder.remote(self.remote)
        else:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the executors' Python: ours
            builder = SparkSession.builder.master(self.master)
        for key, value in self._builder_config().items():
            builder = builder.config(key, value)
        self._spark_session = builder.getOrCreate()
        how = "" if self.remote else ", " + self._jvm_note()
        return f"Spark session started ({self.remote or self.master}) in {time.monotonic() - started:.1f} s{how}"

    def _jvm_note(self) -> str:
        jit = f"a run of {self._run_hours} h: the JVM's quick compiler only, " if self._quick_jit() else ""
        heap = f"a run of {self._run_hours} h: a lean heap, " if self._long_run() else ""
        return jit + heap + self._classes_note()

    def _classes_note(self) -> str:
        if self._archive():
            return "Spark's classes mapped from their archive"
        if not self.class_archive:
            return "class archive off"
        return f"no class archive for this Java and Spark (starts are seconds faster with one: {spark_classes.MAKE})"

    def done_with(self, asset_keys: Iterable[AssetKey]) -> None:
        """A step's Spark assets are computed. Once the run has none left, the session stops: in local
        mode its JVM is most of a run's memory (0.9 GB after 744 hours), and the warehouse load after
        Gold needs none of it."""
        self._pending -= {key.to_user_string() for key in asset_keys}
        if not self._pending and (self._spark_session is not None or self._starting is not None):
            self._stop()
            log.info("Spark session stopped: no later step of this run uses it")

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self._stop()
        while self._ending:
            ending = self._ending.pop()
            try:
                ending.wait(JVM_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                ending.kill()
                ending.wait()

    def _stop(self) -> None:
        if self._starting is not None:  # no step used it: let the start finish, then stop it
            wait([self._starting])
            self._starting = None
        if self._spark_session is not None:
            self._spark_session.stop()
            self._spark_session = None
        if self._own_jvm:  # a stopped session leaves its JVM running, heap and classes resident
            self._own_jvm = False
            ending = _end_local_jvm()  # it exits while the next step runs
            self._ending += [ending] if ending else []

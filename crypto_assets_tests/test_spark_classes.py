"""The driver JVM's options. The archive of Spark's classes: every session of a set-up machine maps
the one `make setup` made, and none ever maps an archive that is stale or damaged (a JVM crashes
on those). The collector: serial for a small heap, unless the user names one. The compiler: the
JVM's quick one alone for a short run, both for a long backfill, unless the user names one. The
heap: lean for a long backfill, the user's own settings last."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from dagster import asset, materialize

from crypto_assets.partitions import HOUR, RANGE_TAGS, current_hour, hourly_partitions, partition_key, run_hours
from crypto_assets.resources import spark_classes
from crypto_assets.resources.spark import LEAN_HEAP, QUICK_JIT, SparkResource
from support import unavailable


def java_options(resource: SparkResource) -> str:
    return resource._builder_config()["spark.driver.extraJavaOptions"]


def test_sessions_map_the_archive_the_setup_made():
    archive = spark_classes.usable_archive()
    if archive is None:
        unavailable(f"no usable Spark class archive in {spark_classes.ARCHIVE_DIR}: `make setup` makes it")
    assert f"-XX:SharedArchiveFile={archive}" in java_options(SparkResource())
    assert "SharedArchiveFile" not in java_options(SparkResource(class_archive=False))
    remote = SparkResource(remote="sc://127.0.0.1:15002")._builder_config()
    assert "spark.driver.extraJavaOptions" not in remote  # a Connect server's JVM is not ours


def test_a_small_heap_gets_the_serial_collector_unless_the_user_names_one():
    assert "-XX:+UseSerialGC" in java_options(SparkResource())  # the default heap, 512m
    assert "-XX:+UseSerialGC" in java_options(SparkResource(driver_memory="1G"))
    assert "UseSerialGC" not in java_options(SparkResource(driver_memory="4g"))
    assert "UseSerialGC" not in java_options(SparkResource(java_options="-XX:+UseParallelGC"))
    assert "-XX:+UseSerialGC" in java_options(SparkResource(java_options="-Xlog:gc -XX:+PrintGCDetails"))


def options_in_a_run(resource: SparkResource, hours: int) -> str:
    """The driver JVM options ``resource`` gives a real run of the last ``hours`` hours (no JVM started)."""
    seen = []

    @asset(partitions_def=hourly_partitions)
    def probe(context, spark: SparkResource) -> None:
        seen.append((len(context.partition_keys), java_options(spark)))

    last = current_hour()
    keys = [partition_key(last - (hours - 1) * HOUR), partition_key(last)]
    run = {"partition_key": keys[0]} if hours == 1 else {"tags": dict(zip(RANGE_TAGS, keys))}
    assert materialize([probe], resources={"spark": resource}, **run).success
    [(partitions, options)] = seen
    assert partitions == hours
    return options


def test_a_short_run_compiles_with_the_quick_compiler_alone_and_a_long_backfill_with_both():
    assert QUICK_JIT in options_in_a_run(SparkResource(), 1)
    assert QUICK_JIT in options_in_a_run(SparkResource(), 24)
    assert "TieredStopAtLevel" not in options_in_a_run(SparkResource(), 25)
    assert "TieredStopAtLevel" not in options_in_a_run(SparkResource(quick_jit_hours=0), 1)
    own = options_in_a_run(SparkResource(java_options="-XX:TieredStopAtLevel=4"), 1)
    assert QUICK_JIT not in own and "-XX:TieredStopAtLevel=4" in own
    assert "TieredStopAtLevel" not in java_options(SparkResource())  # outside a run: no window known
    assert run_hours({}) is None


def test_a_long_backfill_keeps_a_lean_heap_and_the_users_heap_options_win():
    lean = " ".join(LEAN_HEAP)
    assert lean not in options_in_a_run(SparkResource(), 24)  # starting small costs a short run time
    assert lean in options_in_a_run(SparkResource(), 25)
    own = options_in_a_run(SparkResource(java_options="-Xms256m"), 25)
    assert own.index("-Xms256m") > own.index(lean)  # the JVM takes an option's last value
    assert lean not in java_options(SparkResource())  # outside a run: no window known


@pytest.fixture
def made(tmp_path) -> Path:
    """A folder holding an "archive" with a stamp that matches it, as build() leaves one."""
    archive = spark_classes.archive_path(tmp_path)
    archive.write_bytes(b"\0" * 4096)
    spark_classes._stamp_file(archive).write_text(json.dumps(asdict(spark_classes._stamp(archive))))
    return tmp_path


def test_an_archive_is_used_only_while_its_stamp_matches(made):
    archive = spark_classes.archive_path(made)
    assert spark_classes.usable_archive(made) == archive
    stamp_file = spark_classes._stamp_file(archive)
    stamp = spark_classes.ArchiveStamp(**json.loads(stamp_file.read_text()))
    for stale in (replace(stamp, java_mtime_ns=1), replace(stamp, jars_mtime_ns=1), replace(stamp, java="/opt/jdk")):
        stamp_file.write_text(json.dumps(asdict(stale)))  # another JVM build, other jars
        assert spark_classes.usable_archive(made) is None, stale
    stamp_file.write_text(json.dumps(asdict(stamp)))
    with archive.open("r+b") as damaged:  # cut short (as by a full disk): a JVM mapping it dies of SIGBUS
        damaged.truncate(1024)
    assert spark_classes.usable_archive(made) is None
    stamp_file.write_text("{not json")
    assert spark_classes.usable_archive(made) is None


def test_a_build_that_fails_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))  # spark-submit cannot start a JVM
    with pytest.raises(RuntimeError, match="making Spark's class archive failed"):
        spark_classes.build(tmp_path / "share")
    assert list((tmp_path / "share").iterdir()) == []

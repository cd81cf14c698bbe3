"""The driver JVM's options. The archive of Spark's classes: every session of a set-up machine maps
the one `make setup` made, and none ever maps an archive that is stale or damaged (a JVM crashes
on those). The collector: serial for a small heap, unless the user names one."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from crypto_assets.resources import spark_classes
from crypto_assets.resources.spark import SparkResource
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

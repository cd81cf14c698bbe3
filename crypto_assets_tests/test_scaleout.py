"""Off the laptop, run here: the same hours through the real CLI with the lake on S3 (moto) and on
Azure Blob (Azurite), Spark on a standalone cluster and through Spark Connect (both from the
pyspark wheel), all started on 127.0.0.1 by the tests. Every table — Bronze's record texts,
Silver, the quarantine, the four Gold tables, the warehouse — must be identical to the local run's
(capture metadata such as run ids and fetch times aside). A lake that cannot be reached, or a
CRYPTO_LAKE_ROOT that is no lake, fails before any API call, naming what to check."""

from __future__ import annotations

import uuid
from pathlib import Path

import obstore
import pytest

from crypto_assets.partitions import HOUR, current_hour, partition_key
from crypto_assets.resources import lake_files
from crypto_assets.resources.lakehouse import LakehouseResource
from services import s3_server, spark_cluster, spark_connect_server
from support import REFERENCE_COINS, lake_content, materialize, pipeline_env, star_content


def build(simulator, window, folder, lake_root: str, spark: str, **env) -> tuple[dict, dict]:
    """Run the window in one run (whose Spark session must be ``spark``); every table's content."""
    start, end = window
    odbc = f"DRIVER={{SQLite3}};Database={folder / 'wh.sqlite'};BigInt=1"
    run_env = pipeline_env(simulator.base_url, folder / "home", lake_root, odbc, REFERENCE_COINS, **env)
    run = materialize(run_env, "--partition-range", f"{partition_key(start)}...{partition_key(end - HOUR)}")
    assert f"Spark session started ({spark}" in run.stdout + run.stderr
    return lake_content(LakehouseResource(root=str(lake_root)), start, end), star_content(odbc)


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    with spark_cluster(tmp_path_factory.mktemp("spark-cluster"), env=s3) as url:
        yield url


@pytest.fixture(scope="module")
def connect(tmp_path_factory):
    with spark_connect_server(tmp_path_factory.mktemp("spark-connect")) as url:
        yield url


def assert_identical(got: tuple[dict, dict], reference: dict) -> None:
    (lake, warehouse), expected_lake, expected_warehouse = got, reference["lake"], reference["warehouse"]
    assert all(expected_lake[path] for path in expected_lake if "quarantine" not in path)
    for path, rows in expected_lake.items():
        assert lake[path] == rows, path
    assert warehouse == expected_warehouse


def test_the_lake_on_s3_with_local_spark(still_simulator, reference_run, s3, tmp_path):
    root = f"s3://lake/{uuid.uuid4().hex}"
    got = build(still_simulator, reference_run["window"], tmp_path, root, "local[", **s3)
    assert_identical(got, reference_run)
    # the landing files are in the bucket too, each capture with its manifest; nothing local
    landed = [o["path"] for o in obstore.list(lake_files.store(f"{root}/raw_data/landing")).collect()]
    assert any(path.endswith("manifest.json") for path in landed) and len(landed) > 1
    assert not Path("s3:").exists() and not (tmp_path / "s3:").exists()
    # the store's secret is nowhere in what Dagster kept of the run (event log, compute logs)
    secret = s3["AWS_SECRET_ACCESS_KEY"].encode()
    kept = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert kept and not [p for p in kept if secret in p.read_bytes()]


def test_the_lake_on_adls_gen2_with_local_spark(still_simulator, reference_run, azure, tmp_path):
    root = f"abfss://lake@{azure['AZURE_STORAGE_ACCOUNT_NAME']}.dfs.core.windows.net/{uuid.uuid4().hex}"
    got = build(still_simulator, reference_run["window"], tmp_path, root, "local[", **azure)
    assert_identical(got, reference_run)


def test_the_lake_on_s3_with_a_standalone_cluster(still_simulator, reference_run, s3, cluster, tmp_path):
    got = build(
        still_simulator,
        reference_run["window"],
        tmp_path,
        f"s3://lake/{uuid.uuid4().hex}",
        cluster,
        **s3,
        SPARK_MASTER=cluster,
        SPARK_LOCAL_IP="127.0.0.1",
    )
    assert_identical(got, reference_run)


def test_a_local_lake_through_spark_connect(still_simulator, reference_run, connect, tmp_path):
    got = build(still_simulator, reference_run["window"], tmp_path, tmp_path / "lake", connect, SPARK_REMOTE=connect)
    assert_identical(got, reference_run)


def refused_before_any_api_call(simulator, folder, lake_root: str, select: str = "key:raw_data/*", **env) -> str:
    """Run the last hour against ``lake_root``: the run must fail without calling the API. Its output."""
    run_env = pipeline_env(
        simulator.base_url,
        folder / "home",
        lake_root,
        f"DRIVER={{SQLite3}};Database={folder / 'wh.sqlite'};BigInt=1",
        REFERENCE_COINS,
        **env,
    )
    before = simulator.request_count
    failed = materialize(
        run_env, "--partition", partition_key(current_hour() - HOUR), select=select, expect_success=False
    )
    assert failed.returncode != 0 and simulator.request_count == before
    return failed.stdout + failed.stderr


def test_an_unreachable_object_store_fails_before_any_api_call_without_secrets(simulator, s3, tmp_path):
    secret = "wrong-secret-0f1e2d3c"
    output = refused_before_any_api_call(
        simulator,
        tmp_path,
        "s3://lake-nowhere/lake",
        select="*",
        **{**s3, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_SECRET_ACCESS_KEY": secret},
    )
    assert "the lake at s3://lake-nowhere/lake (S3, bucket 'lake-nowhere'; CRYPTO_LAKE_ROOT) is not reachable" in output
    assert "check AWS_ENDPOINT_URL" in output and secret not in output


def test_wrong_credentials_fail_before_any_api_call_naming_what_to_check(simulator, tmp_path):
    secret = "wrong-secret-9a8b7c6d"
    with s3_server(tmp_path, checks_credentials=True) as store:
        output = refused_before_any_api_call(
            simulator,
            tmp_path,
            "s3://lake-locked/lake",
            **{**store, "AWS_ACCESS_KEY_ID": "AKIAWRONGKEY", "AWS_SECRET_ACCESS_KEY": secret},
        )
    assert "the lake at s3://lake-locked/lake (S3, bucket 'lake-locked'; CRYPTO_LAKE_ROOT) is not reachable" in output
    assert "the store refused the credentials (403 Forbidden)" in output
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in output and secret not in output


@pytest.mark.parametrize(
    "root, shown",
    [
        ("hdfs://nn/lake", "hdfs://nn/lake"),  # (the other refusals are unit-tested in test_lake_root.py)
        ("s3://user:pa55word@bucket/lake", "s3://***@bucket/lake"),  # credentials never in the URI, nor echoed
    ],
)
def test_a_lake_root_that_is_no_lake_is_refused_before_any_api_call(simulator, tmp_path, root, shown):
    output = refused_before_any_api_call(simulator, tmp_path, root)
    assert f"CRYPTO_LAKE_ROOT={shown!r}" in output and "pa55word" not in output

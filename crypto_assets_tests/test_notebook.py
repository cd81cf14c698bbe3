"""The notebook users open (examples/lake_from_a_notebook.ipynb), run cell by cell in one namespace as a
kernel would, against the reference run's lake as written and against a copy of it on S3 (moto) and
Azure Blob Storage (Azurite): its answers must be what the Delta tables hold, from DuckDB and Polars alike."""

from __future__ import annotations

import json

import obstore
import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from crypto_assets.partitions import HOUR
from crypto_assets.resources import lake_files
from crypto_assets.tables import GOLD_DISTRIBUTION, GOLD_OVERVIEW, GOLD_TRENDS
from services import AZURITE_KEY
from support import REPO

NOTEBOOK = REPO / "examples" / "lake_from_a_notebook.ipynb"
GOLD = (GOLD_OVERVIEW, GOLD_TRENDS, GOLD_DISTRIBUTION)
ANSWERS = ("overview", "movers", "tiers")


def code_cells() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def run_notebook(lake_root: str) -> dict:
    """Every code cell in order, with CRYPTO_LAKE_ROOT set as a user would: the namespace it leaves."""
    namespace: dict = {"__name__": "__main__"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRYPTO_LAKE_ROOT", lake_root)
        for number, source in enumerate(code_cells(), 1):
            exec(compile(source, f"{NOTEBOOK.name}, code cell {number}", "exec"), namespace)
    return namespace


def delta(root: str, table) -> pl.DataFrame:
    """The table as delta-rs itself reads it: what the notebook's answers must match."""
    return pl.from_arrow(DeltaTable(f"{root}/{table.path}").to_pyarrow_table())


def upload(local_root, uri: str) -> None:
    """The Gold tables' files, Delta log included, copied as they are (every version, not a rewrite)."""
    target = lake_files.store(uri)
    for table in GOLD:
        for path in (local_root / table.path).rglob("*"):
            if path.is_file():
                obstore.put(target, path.relative_to(local_root).as_posix(), path.read_bytes())


@pytest.fixture(scope="module")
def local(reference_run) -> dict:
    return run_notebook(str(reference_run["lake_root"]))


def test_is_a_clean_jupyter_notebook():
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4 and notebook["metadata"]["kernelspec"]["language"] == "python"
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    assert kinds[0] == "markdown" and kinds.count("markdown") >= 4 and kinds.count("code") >= 5
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)  # shipped cleared


def test_without_the_variable_it_opens_the_demo_lake_from_examples(tmp_path, monkeypatch):
    """Jupyter starts the kernel in examples/: ./data/lake is the repository's, where `make demo` writes."""
    (tmp_path / "examples").mkdir()
    monkeypatch.chdir(tmp_path / "examples")
    monkeypatch.delenv("CRYPTO_LAKE_ROOT", raising=False)
    namespace: dict = {}
    exec(code_cells()[0], namespace)
    assert namespace["LAKE_ROOT"] == str(tmp_path / "data" / "lake")
    assert namespace["GOLD"]["overview"] == f"{tmp_path}/data/lake/{GOLD_OVERVIEW.path}"


def test_answers_are_what_the_delta_tables_hold(local, reference_run):
    root, (start, end) = str(reference_run["lake_root"]), reference_run["window"]
    hours = [start + n * HOUR for n in range((end - start) // HOUR)]
    overview, trends, distribution = (delta(root, table) for table in GOLD)

    # the market over time: one row per hour of the window, the values the table holds
    assert local["overview"]["ingest_hour"].to_list() == hours
    assert_frame_equal(local["overview"], overview.select(local["overview"].columns).sort("ingest_hour"))

    latest = hours[-1]
    assert local["latest"] == latest
    trends_now = [row for row in trends.to_dicts() if row["ingest_hour"] == latest]
    ranked = sorted(trends_now, key=lambda r: (r["return_1h_pct"] is None, -abs(r["return_1h_pct"] or 0), r["coin_id"]))
    assert local["movers"]["coin_id"].to_list() == [row["coin_id"] for row in ranked[:5]]
    assert local["movers"]["return_1h_pct"].null_count() == 0  # the reference run has the hour before

    tiers_now = distribution.filter(pl.col("ingest_hour") == latest).sort("tier_order")
    assert local["tiers"]["market_cap_tier"].to_list() == tiers_now["market_cap_tier"].to_list()
    assert local["tiers"]["coin_count"].sum() == overview.filter(pl.col("ingest_hour") == latest)["coins_tracked"][0]

    for name in ANSWERS:  # the notebook's own check passed; the DuckDB and Polars frames are the same
        assert_frame_equal(local[name], local[f"pl_{name}"])


@pytest.mark.parametrize("store", ["s3", "azure"])
def test_the_same_answers_from_object_storage(store, request, local, reference_run, monkeypatch):
    """The lake copied to the store: DuckDB (httpfs or azure with a SECRET from the environment) and
    Polars (storage_options from it) give exactly the answers of the local lake."""
    request.getfixturevalue(store)  # the server, its AWS_* or AZURE_* settings in the environment
    if store == "s3":
        uri = "s3://lake/notebook"
    else:
        uri = "az://lake/notebook"
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY)  # DuckDB's connection string needs the key
    upload(reference_run["lake_root"], uri)
    remote = run_notebook(uri)
    assert remote["GOLD"]["overview"] == f"{uri}/{GOLD_OVERVIEW.path}"
    assert remote["con"].sql("SELECT type FROM duckdb_secrets()").fetchall() == [(store,)]  # it did go remote
    for name in ANSWERS:
        assert_frame_equal(remote[name], local[name])
        assert_frame_equal(remote[f"pl_{name}"], local[name])

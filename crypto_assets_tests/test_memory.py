"""A long run's slices hand their memory back (crypto_assets/memory.py), in a fresh process so
the heap measured is only this test's."""

from __future__ import annotations

import json
import subprocess
import sys

from support import REPO

SCRIPT = """
import json
import pyarrow as pa
import crypto_assets.definitions  # the graph's process: Arrow's pool is chosen on import
from crypto_assets.memory import release_free_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS:"))

before = rss_mb()
blocks = [bytes(2000) for _ in range(100_000)]  # 200 MB from malloc (objects over 512 bytes)
survivors = blocks[::100]  # what a slice leaves alive (a log record, a row count) pins the heap
del blocks
held = rss_mb()
release_free_memory()
print(json.dumps({"pool": pa.default_memory_pool().backend_name, "before": before, "held": held, "after": rss_mb()}))
"""


def test_arrow_uses_the_system_allocator_and_a_slices_freed_heap_goes_back_to_the_system():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["pool"] == "system"
    assert figures["held"] - figures["before"] > 150, figures  # freed, but still the process's
    assert figures["held"] - figures["after"] > 150, figures  # handed back


DELTA_SCRIPT = """
import json, tempfile
import crypto_assets  # the graph's process: delta-rs's allocator is set on import
import pyarrow as pa
from deltalake import write_deltalake

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS:"))

ids = range(3_000_000)
rows = pa.table({"id": pa.array(ids), "coin_id": pa.array([f"coin-{i}" for i in ids])})
with tempfile.TemporaryDirectory() as folder:
    write_deltalake(folder, rows.slice(0, 10))  # delta-rs loaded and its runtime started
    before = rss_mb()
    write_deltalake(folder, rows, mode="append")  # tens of MB of Parquet encoding in delta-rs, then freed
    print(json.dumps({"before": before, "after": rss_mb()}))
"""


def test_delta_rs_hands_a_commits_freed_memory_back_at_once():
    done = subprocess.run(
        [sys.executable, "-c", DELTA_SCRIPT], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    figures = json.loads(done.stdout.splitlines()[-1])
    # jemalloc's default (freed pages kept 10 s) leaves about 60 MB here; returned at once, about 5
    assert figures["after"] - figures["before"] < 25, figures

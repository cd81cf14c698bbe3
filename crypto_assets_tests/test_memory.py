"""A long run's slices hand their memory back (crypto_assets/memory.py), in a fresh process so
the heap measured is only this test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from crypto_assets.memory import ARENAS
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


ARENAS_SCRIPT = """
import ctypes, ctypes.util, json, os, tempfile, threading
import crypto_assets  # the graph's process: glibc's arenas are limited on import

def allocate():
    kept.append(bytearray(20_000))  # malloc'd (over pymalloc's 512 bytes, under mmap's threshold)
    together.wait()  # a thread's arena goes to the next new thread once it ends

kept, together = [], threading.Barrier(8)
threads = [threading.Thread(target=allocate) for _ in range(8)]  # each would get an arena of its own
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile() as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    arenas = open(report.name).read().count("<heap nr=")
print(json.dumps({"arenas": arenas}))
"""


def test_the_processs_threads_share_two_malloc_arenas():
    """What one thread frees, another can reuse (glibc's default: up to eight arenas a core)."""
    environment = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", ARENAS_SCRIPT],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == {"arenas": ARENAS}

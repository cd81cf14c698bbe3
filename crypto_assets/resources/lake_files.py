"""Files of the lake wherever it lives, through obstore: landing objects and Delta's Parquet files.

obstore is the Python binding of the Rust ``object_store`` crate that delta-rs itself uses, so it
reads the same environment variables (``AWS_*``, ``AZURE_*``, ``GOOGLE_*``) for endpoints and
credentials: one configuration reaches the Delta tables and the landing files, and nothing secret
is ever passed around in code. Its conditional ``put(mode="create")`` is what makes a capture's
files and manifest write-once on every store (object stores have no rename). This module is also
imported on Spark executors, which read the Parquet files of a Delta snapshot with it.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from obstore.store import LocalStore, from_url

if TYPE_CHECKING:
    from obstore.store import RetryConfig

# A reachability probe must fail in seconds, not after the default three minutes of retries.
PROBE_RETRIES: RetryConfig = {"max_retries": 1, "retry_timeout": timedelta(seconds=5)}


@lru_cache(maxsize=32)
def store(uri: str, probe: bool = False):
    """The obstore store rooted at ``uri`` (a folder, created if missing, or an object-store URI)."""
    if "://" not in uri or uri.startswith("file://"):
        return LocalStore(uri.removeprefix("file://"), mkdir=True)
    return from_url(uri, retry_config=PROBE_RETRIES) if probe else from_url(uri)


def _split(uri: str) -> tuple[str, str]:
    """(the bucket's root URI, the object's path in it) of an object-store URI."""
    scheme, rest = uri.split("://", 1)
    bucket, _, path = rest.partition("/")
    return f"{scheme}://{bucket}", path


def read_bytes(uri: str) -> bytes:
    """One file's bytes: a local path, or an object-store URI as delta-rs' ``file_uris()`` gives."""
    if "://" not in uri:
        with open(uri, "rb") as handle:
            return handle.read()
    root, path = _split(uri)
    return bytes(obstore.get(store(root), path).bytes())


def read_parquet(uri: str, schema: pa.Schema, columns: list[str] | None = None, filter=None) -> pa.Table:
    """One Parquet file as Arrow, read as ``schema`` (files written before a column existed give nulls)."""
    source = uri if "://" not in uri else pa.BufferReader(read_bytes(uri))
    return pq.read_table(source, schema=schema, columns=columns, filters=filter)

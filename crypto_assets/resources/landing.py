"""The landing files: every response body byte for byte, under ``{root}/raw_data/landing``.

A capture is a folder of bodies plus a ``manifest.json`` saying what each one is, written last:
a folder without its manifest (a crash while landing) is no capture and readers ignore it.
Every object is created with a conditional put that fails if it exists, so nothing is ever
overwritten, on a folder or an object store alike (they have no rename). Bodies are put one
at a time as they arrive, so landing a capture holds one body in memory, not the capture.

obstore (the Python binding of the Rust ``object_store`` crate that delta-rs uses) reads the
same URIs and the same ``AWS_*`` / ``AZURE_STORAGE_*`` / ``GOOGLE_*`` variables as delta-rs.
"""

from __future__ import annotations

import json

import obstore
from obstore.exceptions import AlreadyExistsError

from crypto_assets.resources import lake_files

MANIFEST = "manifest.json"


class LandingError(Exception):
    """A landing write that was refused; what was landed before is unchanged."""


def _checked(capture_id: str, name: str) -> str:
    if name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
        raise LandingError(f"capture {capture_id}: file name {name!r} leaves its folder")
    return f"{capture_id}/{name}"


class Landing:
    """The landing folder of one lake (``uri``), on local disk or an object store."""

    def __init__(self, uri: str):
        self.uri = uri
        self._store = lake_files.store(uri)

    def uri_of(self, relative: str) -> str:
        return f"{self.uri.rstrip('/')}/{relative}"

    def put(self, capture_id: str, name: str, body: bytes) -> None:
        """One body of a capture that is being landed (its manifest not yet written)."""
        self._create(capture_id, _checked(capture_id, name), body)

    def put_manifest(self, capture_id: str, manifest: dict) -> str:
        """Make the capture exist: its manifest, after every body it lists."""
        for entry in manifest["files"]:
            _checked(capture_id, entry["name"])
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        self._create(capture_id, _checked(capture_id, MANIFEST), body)
        return self.uri_of(capture_id)

    def _create(self, capture_id: str, path: str, body: bytes) -> None:
        try:
            obstore.put(self._store, path, body, mode="create")
        except AlreadyExistsError:
            raise LandingError(f"capture {capture_id} exists already: captures are never rewritten") from None

    def children(self, prefix: str) -> list[str]:
        """Names of the folders directly under ``prefix``."""
        listing = obstore.list_with_delimiter(self._store, prefix.rstrip("/") + "/")
        return sorted(path.rstrip("/").rsplit("/", 1)[-1] for path in listing["common_prefixes"])

    def captures(self, prefix: str) -> list[str]:
        """Ids of the complete captures (manifest present) under ``prefix``."""
        objects = obstore.list(self._store, prefix=prefix.rstrip("/") + "/").collect()
        return sorted(o["path"].removesuffix("/" + MANIFEST) for o in objects if o["path"].endswith("/" + MANIFEST))

    def manifest(self, capture_id: str) -> dict:
        return json.loads(self.read(capture_id, MANIFEST))

    def read(self, capture_id: str, name: str) -> bytes:
        return bytes(obstore.get(self._store, _checked(capture_id, name)).bytes())

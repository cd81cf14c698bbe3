"""Where the lake lives: ``CRYPTO_LAKE_ROOT`` as a folder or an object-store URI.

A folder (``./data/lake``, ``/data/lake``, ``file:///data/lake``), ``s3://bucket/prefix``,
``az://container/prefix`` or ``abfss://container@account.dfs.core.windows.net/prefix``, or
``gs://bucket/prefix``. Credentials and endpoints are never part of the URI: each store reads its
standard environment variables (``AWS_*``, ``AZURE_STORAGE_*``, ``GOOGLE_*``), the ones delta-rs and
obstore (the same Rust ``object_store`` crate) both understand, so the Delta tables and the landing
files are reached with one configuration. Anything else is refused with a message naming the
variable, before any API call.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from crypto_assets.settings import store_secrets

VARIABLE = "CRYPTO_LAKE_ROOT"
# scheme -> (store name in messages, environment variable prefixes that configure it)
STORES = {
    "s3": ("S3", ("AWS_",)),
    "az": ("Azure Blob Storage", ("AZURE_",)),
    "abfs": ("Azure Data Lake Storage", ("AZURE_",)),
    "abfss": ("Azure Data Lake Storage", ("AZURE_",)),
    "gs": ("Google Cloud Storage", ("GOOGLE_",)),
}
HINTS = {
    "s3": "check AWS_ENDPOINT_URL (for S3-compatible stores; AWS_ALLOW_HTTP=true for http), AWS_REGION, "
    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that the bucket exists",
    "az": "check AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_TOKEN, "
    "AZURE_STORAGE_USE_EMULATOR=true for Azurite) and that the container exists",
    "gs": "check GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) and that the bucket exists",
}
HINTS["abfs"] = HINTS["abfss"] = HINTS["az"]
_USERINFO = re.compile(r"^([a-zA-Z][\w+.-]*://)[^/@]*:[^/@]*@")


@dataclass(frozen=True)
class LakeRoot:
    uri: str  # an absolute folder, or scheme://bucket[/prefix] without a trailing slash
    scheme: str  # "file" for a folder
    bucket: str | None  # bucket or container; None for a folder

    @classmethod
    def parse(cls, value: str) -> "LakeRoot":
        text = (value or "").strip()
        if _USERINFO.match(text):
            shown = _USERINFO.sub(r"\1***@", text)
            raise ValueError(
                f"{VARIABLE}={shown!r}: no credentials in the URI; they come from the store's environment variables"
            )
        if not text:
            raise ValueError(f"{VARIABLE} is empty: set it to a folder or an object-store URI (s3://bucket/prefix)")
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme in ("", "file") or (len(scheme) == 1 and text[1:3] in (":\\", ":/")):  # a path (or C:\…)
            path = parts.path if scheme == "file" else text
            if scheme == "file" and parts.netloc not in ("", "localhost"):
                raise ValueError(f"{VARIABLE}={text!r}: a file:// URI names a local folder, not host {parts.netloc!r}")
            return cls(os.path.abspath(os.path.expanduser(path)), "file", None)
        if scheme not in STORES:
            raise ValueError(
                f"{VARIABLE}={text!r}: unsupported scheme {scheme!r}; use a folder, file://, s3://bucket/prefix, "
                "az://container/prefix, abfss://container@account.dfs.core.windows.net/prefix or gs://bucket/prefix"
            )
        if not parts.netloc or "@" in parts.netloc and scheme not in ("abfs", "abfss"):
            raise ValueError(
                f"{VARIABLE}={text!r}: name the bucket (container) after {scheme}:// — and no credentials in it"
            )
        if parts.query or parts.fragment or ":" in parts.netloc.split("@")[-1] and scheme != "abfss":
            raise ValueError(
                f"{VARIABLE}={text!r}: no query, fragment or port: endpoints and keys come from the environment"
            )
        bucket = parts.netloc.split("@")[0]
        prefix = parts.path.strip("/")
        return cls(f"{scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else ""), scheme, bucket)

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def store(self) -> str:
        return "local folder" if self.is_local else STORES[self.scheme][0]

    @property
    def hint(self) -> str:
        return "check that the folder is writable" if self.is_local else HINTS[self.scheme]

    def join(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def describe(self) -> str:
        where = f"bucket {self.bucket!r}" if self.bucket else self.uri
        return f"the lake at {self.uri} ({self.store}, {where}; {VARIABLE})"

    def secrets(self) -> list[str]:
        """Values of this store's environment variables that are secrets, to mask in messages."""
        if self.is_local:
            return []
        return store_secrets(STORES[self.scheme][1])

    def mask(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

"""CRYPTO_LAKE_ROOT: what is a lake, what is refused (naming the variable), and secrets never shown."""

from __future__ import annotations

import os

import pytest

from crypto_assets.resources.lake_root import LakeRoot


@pytest.mark.parametrize(
    "text, uri, scheme, bucket",
    [
        ("./data/lake", os.path.abspath("./data/lake"), "file", None),
        ("file:///srv/lake", "/srv/lake", "file", None),
        ("s3://bucket/some/prefix/", "s3://bucket/some/prefix", "s3", "bucket"),
        ("az://container/lake", "az://container/lake", "az", "container"),
        (
            "abfss://container@account.dfs.core.windows.net/lake",
            "abfss://container@account.dfs.core.windows.net/lake",
            "abfss",
            "container",
        ),
        ("gs://bucket", "gs://bucket", "gs", "bucket"),
    ],
)
def test_folders_and_object_store_uris_are_lakes(text, uri, scheme, bucket):
    root = LakeRoot.parse(text)
    assert (root.uri, root.scheme, root.bucket) == (uri, scheme, bucket)
    assert root.join("raw_data", "landing") == f"{uri}/raw_data/landing"


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "is empty"),
        ("ftp://host/lake", "unsupported scheme 'ftp'"),
        ("s3a://bucket/lake", "unsupported scheme 's3a'"),
        ("s3://", "name the bucket"),
        ("s3://bucket:9000/lake", "no query, fragment or port"),
        ("s3://bucket/lake?region=x", "no query, fragment or port"),
        ("file://otherhost/lake", "names a local folder"),
        ("s3://key:secret-value@bucket/lake", "no credentials in the URI"),
    ],
)
def test_anything_else_is_refused_naming_the_variable(text, says):
    with pytest.raises(ValueError, match="CRYPTO_LAKE_ROOT") as refused:
        LakeRoot.parse(text)
    assert says in str(refused.value) and "secret-value" not in str(refused.value)


def test_messages_name_the_store_and_bucket_and_mask_its_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-9")
    root = LakeRoot.parse("s3://bucket/lake")
    assert root.describe() == "the lake at s3://bucket/lake (S3, bucket 'bucket'; CRYPTO_LAKE_ROOT)"
    assert "AWS_ENDPOINT_URL" in root.hint
    assert root.mask("403 for very-secret-9") == "403 for ***"

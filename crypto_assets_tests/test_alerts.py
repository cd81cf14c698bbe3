"""The alert path end to end: a real failed run, the run-failure sensor evaluated against the
instance that recorded it, and the message as a local HTTP receiver got it."""

from __future__ import annotations

import json

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    DagsterInstance,
    MaterializeResult,
    asset,
    materialize,
)
from webhook_receiver import Receiver, evaluate_run_failure_alert, posted_text

from crypto_assets.assets.bronze import bronze_coingecko_markets
from crypto_assets.partitions import HOUR, current_hour, hour_label, hourly_partitions, partition_key
from crypto_assets.redaction import scrub
from crypto_assets.resources.alert_webhook import AlertDeliveryError, AlertWebhookResource
from crypto_assets.resources.coingecko import CoinGeckoResource
from crypto_assets.resources.lakehouse import LakehouseResource
from crypto_assets.simulator import Simulator
from support import settle_hour

API_KEY = "CG-s3cr3t-test-key-0042"
ODBC_WITH_PASSWORD = "DRIVER={PostgreSQL Unicode};SERVER=db;UID=loader;PWD={hunter2;x};DATABASE=crypto"


@pytest.fixture
def receiver(monkeypatch):
    server = Receiver()
    monkeypatch.setenv("COINGECKO_API_KEY", API_KEY)  # a secret of the deployment, to be scrubbed
    yield server
    server.close()


def test_a_bronze_failure_posts_run_asset_hour_and_error_without_the_key(receiver, tmp_path):
    settle_hour()
    hour = current_hour()
    instance = DagsterInstance.ephemeral()
    with Simulator(coins=20, api_key=API_KEY) as sim:
        sim.inject("key_error", times=10, code=10002)
        result = materialize(
            [bronze_coingecko_markets],
            partition_key=partition_key(hour),
            instance=instance,
            raise_on_error=False,
            resources={
                "coingecko": CoinGeckoResource(
                    api_key=API_KEY, base_url=sim.base_url, coins_limit=5, calls_per_minute=60000
                ),
                "lakehouse": LakehouseResource(root=str(tmp_path / "lake")),
            },
        )
    assert not result.success
    evaluate_run_failure_alert(instance, result, AlertWebhookResource(url=receiver.url))

    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    text = posted_text(body)
    assert result.run_id in body["text"]
    assert "raw_data/bronze_coingecko_markets" in body["text"]
    assert hour_label(hour) in body["text"]
    assert "401" in text and "API Key Missing" in text, text
    assert API_KEY not in text
    assert body["blocks"][0]["type"] == "header"


def test_a_failed_blocking_check_is_named_with_its_hours_and_scrubbed(receiver):
    """A blocking check failing (with secrets in its metadata) fails the run and is alerted."""

    @asset(
        key=["cleaned_data", "probe"],
        partitions_def=hourly_partitions,
        check_specs=[AssetCheckSpec("prices_positive", asset=["cleaned_data", "probe"], blocking=True)],
    )
    def probe(context):
        return MaterializeResult(
            check_results=[
                AssetCheckResult(
                    check_name="prices_positive",
                    passed=False,
                    metadata={
                        "bad_hours": [hour_label(h) for h in hours],
                        "source": ODBC_WITH_PASSWORD,
                        "request": f"/coins/markets?x_cg_demo_api_key={API_KEY}",
                    },
                )
            ]
        )

    first = current_hour() - 2 * HOUR
    hours = [first, first + HOUR]
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [probe],
        instance=instance,
        raise_on_error=False,
        tags={
            "dagster/asset_partition_range_start": partition_key(hours[0]),
            "dagster/asset_partition_range_end": partition_key(hours[1]),
        },
    )
    assert not result.success
    evaluate_run_failure_alert(
        instance, result, AlertWebhookResource(url=receiver.url, ui_url="http://dagster.example:3000/")
    )

    text = posted_text(receiver.bodies[0])
    assert f"<http://dagster.example:3000/runs/{result.run_id}|{result.run_id}>" in text
    assert "cleaned_data/probe" in text and "prices_positive" in text and "blocking" in text
    assert hour_label(hours[0]) in text and hour_label(hours[1]) in text
    assert "hunter2" not in text and API_KEY not in text
    assert "PWD=***" in text


def test_no_webhook_configured_means_no_post_and_no_error(receiver):

    @asset
    def broken():
        raise ValueError("boom")

    instance = DagsterInstance.ephemeral()
    result = materialize([broken], instance=instance, raise_on_error=False)
    evaluate_run_failure_alert(instance, result, AlertWebhookResource())
    assert receiver.bodies == []


def test_a_refusing_webhook_is_an_error_that_does_not_show_the_url():
    server = Receiver(403)

    @asset
    def broken():
        raise ValueError("boom")

    instance = DagsterInstance.ephemeral()
    result = materialize([broken], instance=instance, raise_on_error=False)
    try:
        with pytest.raises(Exception) as caught:
            evaluate_run_failure_alert(instance, result, AlertWebhookResource(url=server.url))
    finally:
        server.close()
    assert isinstance(caught.value, AlertDeliveryError) or isinstance(caught.value.__cause__, AlertDeliveryError)
    assert "403" in str(caught.value) and server.url not in str(caught.value)


@pytest.mark.parametrize(
    "text, hidden",
    [
        ("DRIVER={SQLite3};Database=x;PWD=plain;BigInt=1", "plain"),
        ("Server=s;Password = {a;b}}c};UID=u", "a;b}}c"),
        ("GET /coins/markets?x_cg_pro_api_key=abc123&page=2", "abc123"),
        ('headers {"x-cg-demo-api-key": "abc123"}', "abc123"),
        (f"HTTP 401 with key {API_KEY}", API_KEY),
        ("s3 said: SignatureDoesNotMatch for s3cr3t-aws-key-77", "s3cr3t-aws-key-77"),
        ("blob error, key Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
    ],
)
def test_scrub_hides_secrets(monkeypatch, text, hidden):
    monkeypatch.setenv("COINGECKO_API_KEY", API_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-aws-key-77")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "Zm9vYmFyYmF6cXV4")
    assert hidden not in scrub(text)


def test_text_from_data_cannot_mention_or_link_in_slack(receiver):
    """An error and check metadata carrying Slack markup reach the message as literal text."""

    @asset(check_specs=[AssetCheckSpec("no_schema_drift", asset="upstream")])
    def upstream():
        return MaterializeResult(
            check_results=[
                AssetCheckResult(
                    check_name="no_schema_drift",
                    passed=False,
                    severity=AssetCheckSeverity.WARN,
                    metadata={"<!here>": 1},
                )
            ]
        )

    @asset(deps=[upstream])
    def downstream():
        raise ValueError("unknown field <!channel> & <http://evil.example|click>")

    instance = DagsterInstance.ephemeral()
    result = materialize([upstream, downstream], instance=instance, raise_on_error=False)
    evaluate_run_failure_alert(
        instance, result, AlertWebhookResource(url=receiver.url, ui_url="http://dagster.example")
    )

    message = json.dumps(receiver.bodies[0])
    assert "<!channel>" not in message and "<!here>" not in message and "<http://evil" not in message
    assert "&lt;!channel&gt; &amp; &lt;http://evil.example|click&gt;" in message
    assert "warning `no_schema_drift` on `upstream`" in message
    run = result.run_id
    assert f"<http://dagster.example/runs/{run}|{run}>" in message  # our own link stays a link

"""The dashboard page (``streamlit run``; ``python -m crypto_assets.dashboard`` starts it): four
panels over the warehouse, read as the read-only role, re-read at most once a minute."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import altair as alt
import pyodbc
import streamlit as st

from crypto_assets.dashboard import labels, quality, queries, reader
from crypto_assets.resources.warehouse import WarehouseError, mask_password
from crypto_assets.resources.warehouse.odbc import error
from crypto_assets.star_schema import hour_of_time_key, time_key

HOURS_SHOWN = {"last 24 hours": 24, "last 7 days": 168, "last 30 days": 720, "everything": None}
BADGE: dict[str, Literal["green", "orange", "red", "gray"]] = {
    "ok": "green",
    "warn": "orange",
    "fail": "red",
    "missing": "gray",
}


@st.cache_data(ttl=60, show_spinner="Reading the warehouse…")
def read(connection_string: str, hours: int | None, top: int) -> dict[str, Any]:
    """Every panel's rows, in one read-only connection."""
    d, s = reader.dialect_of(connection_string), reader.SCHEMA
    with reader.connect(connection_string) as conn:
        try:
            latest = reader.fetch(conn, *queries.latest_hour(d, s))[0]["time_key"]
            if latest is None:
                return {"latest": None}
            since = 0 if hours is None else time_key(hour_of_time_key(latest) - timedelta(hours=hours - 1))
            return {
                "latest": latest,
                "overview": reader.fetch(conn, *queries.overview(d, s, since)),
                "distribution": reader.fetch(conn, *queries.distribution(d, s, latest)),
                "movers": reader.fetch(conn, *queries.movers(d, s, latest, top)),
                "quality": quality.statuses(reader.fetch(conn, *queries.quality(d, s, since))),
            }
        except pyodbc.Error as failure:
            raise error("reading the warehouse failed (has a run loaded it?)", failure, connection_string) from None


def overview_panel(rows: list[dict]) -> None:
    st.header("Market overview over time")
    last, before = rows[-1], rows[-2] if len(rows) > 1 else None

    def change(name: str) -> str | None:
        if before is None or not before[name] or last[name] is None:
            return None
        return f"{(last[name] / before[name] - 1) * 100:+.2f} % since {before['hour_start']:%H:00}"

    cols = st.columns(4)
    cols[0].metric("Total market cap", labels.money(last["total_market_cap"]), change("total_market_cap"))
    cols[1].metric("24 h volume", labels.money(last["total_volume"]), change("total_volume"))
    cols[2].metric("BTC dominance", labels.percent(last["btc_dominance_pct"]))
    cols[3].metric("Coins tracked", str(last["coins_tracked"]))
    cap, volume, dominance = st.columns(3)
    cap.subheader("Total market cap")
    cap.altair_chart(line_chart(rows, {"market cap": "total_market_cap"}, 1e9, "USD bn"))
    volume.subheader("24 h volume")
    volume.altair_chart(line_chart(rows, {"24 h volume": "total_volume"}, 1e9, "USD bn"))
    dominance.subheader("BTC and ETH dominance")
    dominance.altair_chart(
        line_chart(rows, {"BTC": "btc_dominance_pct", "ETH": "eth_dominance_pct"}, 1, "% of market cap")
    )


def line_chart(rows: list[dict], series: dict[str, str], scale: float, title: str) -> alt.Chart:
    """Hourly lines with a point per hour, the axis fitted to the data (not from zero: a market
    cap moves by tenths of a percent an hour)."""
    values = [
        {"hour": r["hour_start"].isoformat(), "series": label, "value": r[column] / scale}
        for r in rows
        for label, column in series.items()
        if r[column] is not None
    ]
    return (
        alt.Chart(alt.Data(values=values), height=260)
        .mark_line(point=True)
        .encode(
            x=alt.X("hour:T", title="hour (UTC)"),
            y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("hour:T", format="%Y-%m-%d %H:00"), "series:N", alt.Tooltip("value:Q", format=",.2f")],
        )
    )


def distribution_panel(rows: list[dict], hour: str) -> None:
    st.header("Distribution by tier")
    st.caption(f"Market-cap tiers at {hour} UTC (mega ≥ $100 B, large ≥ $10 B, mid ≥ $1 B, small ≥ $100 M).")
    if not rows:
        st.info("No tier rows for this hour.")
        return
    chart, table = st.columns(2)
    chart.bar_chart(
        {
            "tier": [r["market_cap_tier"] for r in rows],
            "share of market cap (%)": [r["market_cap_share"] * 100 for r in rows],
        },
        x="tier",
        y="share of market cap (%)",
        sort=False,
    )
    table.table(
        [
            {
                "tier": r["market_cap_tier"],
                "coins": r["coin_count"],
                "market cap": labels.money(r["total_market_cap"]),
                "volume": labels.money(r["total_volume"]),
                "cap share": labels.share(r["market_cap_share"]),
                "volume share": labels.share(r["volume_share"]),
            }
            for r in rows
        ],
        hide_index=True,
    )


def movers_panel(rows: list[dict], top: int, hour: str) -> None:
    st.header("Top movers")
    st.caption(
        f"Largest 24 h changes at {hour} UTC: the warehouse's own 24 h return where it holds the coin a day "
        "earlier, else CoinGecko's reported 24 h change."
    )
    up, down = queries.split_movers(rows, top)
    if not up and not down:
        st.info(
            "No 24 h change is known for this hour yet: the warehouse needs the coins a day earlier, or an hour "
            "captured live (CoinGecko's own 24 h change)."
        )
        return
    for column, title, movers in zip(st.columns(2), ("Largest rises", "Largest falls"), (up, down)):
        column.subheader(title)
        if not movers:
            column.write("None this hour.")
            continue
        column.table(
            [
                {
                    "coin": f"{(r['symbol'] or '').upper()} · {r['name']}",
                    "rank": labels.count(r["market_cap_rank"]),
                    "price": labels.price(r["current_price"]),
                    "24 h": labels.percent(r["change_24h_pct"], signed=True),
                    "basis": r["basis"],
                }
                for r in movers
            ],
            hide_index=True,
        )


def quality_panel(hours: list[dict]) -> None:
    st.header("Data quality per hour")
    st.caption(
        "From the warehouse's own facts: fail = the facts of an hour disagree (snapshot, tiers and overview count "
        f"different coins); missing = an hour not loaded between loaded ones; warn = over "
        f"{quality.STALE_WARN_SHARE:.0%} stale coins, coins down over {quality.DROP_WARN_SHARE:.0%} on the hour "
        "before, or per-coin Gold facts short. Quarantined records stay in the lakehouse (silver_quarantine)."
    )
    counts = quality.summary(hours)
    with st.container(horizontal=True):
        for status, n in counts.items():
            st.badge(f"{n} {status}", color=BADGE[status])
    st.table([{**h, "coins": labels.count(h["coins"])} for h in hours], hide_index=True)


def main() -> None:
    st.set_page_config(page_title="Crypto market · warehouse", layout="wide")
    st.title("Crypto market dashboard")
    connection_string = reader.warehouse_odbc()
    with st.sidebar:
        hours = HOURS_SHOWN[st.selectbox("Hours shown", list(HOURS_SHOWN), index=1)]
        top = st.selectbox("Movers each way", [5, 10, 20], index=0)
        if st.button("Read again now"):
            read.clear()
    try:
        dialect = reader.dialect_of(connection_string)
        data = read(connection_string, hours, top)
    except WarehouseError as failure:
        st.error(str(failure))  # masked: never the password
        return
    masked = mask_password(connection_string, connection_string)
    if data["latest"] is None:
        st.info(f"The warehouse holds no hours yet ({masked}): run `make demo` first.")
        return
    hour = f"{hour_of_time_key(data['latest']):%Y-%m-%d %H:00}"
    st.caption(
        f"{dialect.name} warehouse, {reader.reading_as(dialect, reader.READER_ROLE)} · latest hour {hour} UTC · "
        f"`{masked}`"
    )
    overview_panel(data["overview"])
    distribution_panel(data["distribution"], hour)
    movers_panel(data["movers"], top, hour)
    quality_panel(data["quality"])


main()

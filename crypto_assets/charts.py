"""Pictures for Gold's asset pages: the market-cap distribution and the top movers of a run.

Each chart is a PNG embedded in markdown metadata as a data URI, which the Dagster UI shows
inline on the materialisation. Drawn with matplotlib's object API (``Figure`` + Agg canvas):
no pyplot global state, safe in any thread, no display needed.
"""

import base64
import io

import pyarrow as pa
import pyarrow.compute as pc
from dagster import MetadataValue

from crypto_assets.partitions import hour_label

TOP_MOVERS = 5
UP, DOWN, NEUTRAL = "#2e9d5b", "#d1453b", "#4c78a8"


def _png(figure) -> bytes:
    """The figure as a 64-colour PNG: a third of the size of a full-colour one, and every
    materialisation keeps its chart in the event log."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image  # a matplotlib dependency

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=64).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _figure(title: str):
    # Imported here: matplotlib takes a while to import and only materialisations draw.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), dpi=80, layout="constrained")
    figure.suptitle(title, fontsize=11)
    return figure


def _latest_hour(data: pa.Table) -> pa.Table:
    latest = pc.max(data.column("ingest_hour"))
    return data.filter(pc.equal(data.column("ingest_hour"), latest))


def distribution_chart(distribution: pa.Table) -> bytes | None:
    """Market-cap and volume share per tier in the run's latest hour (None without rows)."""
    if not len(distribution):
        return None
    hour = _latest_hour(distribution).sort_by("tier_order").to_pylist()
    figure = _figure(f"Market distribution by market-cap tier, {hour_label(hour[0]['ingest_hour'])}")
    axes = figure.add_subplot()
    tiers = [f"{row['market_cap_tier']} ({row['coin_count']})" for row in hour]
    positions = range(len(hour))
    axes.barh(
        [p + 0.2 for p in positions],
        [100 * (row["market_cap_share"] or 0) for row in hour],
        0.4,
        label="market cap",
        color=NEUTRAL,
    )
    axes.barh(
        [p - 0.2 for p in positions],
        [100 * (row["volume_share"] or 0) for row in hour],
        0.4,
        label="24 h volume",
        color="#f2a93b",
    )
    axes.set_yticks(list(positions), tiers)
    axes.invert_yaxis()
    axes.set_xlabel("share of the hour's total, %")
    axes.set_ylabel("tier (coins)")
    axes.set_xlim(0, 100)
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def movers_chart(trends: pa.Table) -> bytes | None:
    """The biggest risers and fallers of the run's latest hour, by 24 h return (1 h while fewer
    than 24 h of history exist); a note instead of bars when no return is known yet."""
    if not len(trends):
        return None
    hour = _latest_hour(trends)
    column = next(
        (name for name in ("return_24h_pct", "return_1h_pct") if hour.column(name).null_count < len(hour)), None
    )
    label = hour_label(hour.column("ingest_hour")[0].as_py())
    if column is None:
        figure = _figure(f"Top movers, {label}")
        figure.text(0.5, 0.5, "No returns yet: the coins have no earlier hour in Silver.", ha="center", va="center")
        return _png(figure)
    known = [row for row in hour.select(["symbol", "coin_id", column]).to_pylist() if row[column] is not None]
    known.sort(key=lambda row: row[column])
    fallers = [row for row in known[:TOP_MOVERS] if row[column] < 0]
    risers = [row for row in known[::-1][:TOP_MOVERS] if row[column] >= 0][::-1]
    movers = fallers + risers
    figure = _figure(f"Top movers by {column.removeprefix('return_').removesuffix('_pct')} return, {label}")
    axes = figure.add_subplot()
    values = [row[column] for row in movers]
    axes.barh(
        [(row["symbol"] or row["coin_id"]).upper() for row in movers],
        values,
        color=[UP if value >= 0 else DOWN for value in values],
    )
    axes.axvline(0, color="#888888", linewidth=0.8)
    axes.set_xlabel("return, %")
    for position, value in enumerate(values):
        axes.annotate(
            f"{value:+.2f}%",
            (value, position),
            xytext=(3 if value >= 0 else -3, 0),
            textcoords="offset points",
            ha="left" if value >= 0 else "right",
            va="center",
            fontsize=8,
        )
    axes.margins(x=0.25)
    return _png(figure)


def chart_metadata(png: bytes | None, title: str) -> dict:
    """``{"chart": markdown with the PNG inline}``, or nothing when there is nothing to draw."""
    if png is None:
        return {}
    return {"chart": MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")}

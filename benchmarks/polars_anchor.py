"""The anchor: a plain polars script doing the pipeline's aggregation from DBN into chdb.

For every day: decode the definition and tbbo files (databento's DBN decoder, to numpy),
classify each trade's aggressor side (``B`` → ask volume, ``A`` → bid volume, ``N`` → the quote
rule against the record's own BBO, else unknown), sum per (instrument, 5-minute window) the
bid / ask / unknown volume, trades per side, notional, largest trade and first / last trade time,
attach strike, option type and expiration from the definitions, and insert the rows into an
embedded chdb table. No scoring. Used by ``bench_anchor.py``; runnable alone::

    .venv/bin/python benchmarks/polars_anchor.py OUT_DIR DEF1 TBBO1 [DEF2 TBBO2 ...]

Prints ``ANCHOR rows=<n> volume=<contracts>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import chdb.session
import databento as db
import polars as pl

WINDOW_NS = 300 * 1_000_000_000
UNDEF_PRICE = 2**63 - 1
DDL = """
CREATE TABLE IF NOT EXISTS anchor.windows (
    window_start DateTime64(9, 'UTC'), instrument_id UInt32, raw_symbol String,
    strike Float64, option_type String, expiration Int64,
    bid_volume UInt64, ask_volume UInt64, unknown_volume UInt64,
    buy_trades UInt32, sell_trades UInt32, unknown_trades UInt32,
    notional Float64, max_trade_size UInt32, first_trade_ts Int64, last_trade_ts Int64
) ENGINE = MergeTree ORDER BY (window_start, instrument_id)
"""


def definitions(path: Path) -> pl.DataFrame:
    """Latest definition per instrument id: symbol, strike (USD points), C/P, expiration ns."""
    a = db.DBNStore.from_file(path).to_ndarray()
    strike = a["strike_price"].astype("float64")
    strike[a["strike_price"] == UNDEF_PRICE] = float("nan")
    return pl.DataFrame({
        "instrument_id": a["instrument_id"], "ts_recv": a["ts_recv"],
        "raw_symbol": a["raw_symbol"].astype(str), "strike": strike / 1e9,
        "option_type": a["instrument_class"].astype(str), "expiration": a["expiration"].astype("int64"),
    }).sort("ts_recv").unique("instrument_id", keep="last").drop("ts_recv")


def windows(path: Path, defs: pl.DataFrame) -> pl.DataFrame:
    """Per (instrument, window) totals of one tbbo file."""
    a = db.DBNStore.from_file(path).to_ndarray()
    t = pl.DataFrame({
        "instrument_id": a["instrument_id"], "ts_event": a["ts_event"].astype("int64"),
        "price": a["price"], "size": a["size"].astype("uint64"), "side": a["side"].view("uint8"),
        "bid": a["bid_px_00"], "ask": a["ask_px_00"],
    })
    b, s = ord("B"), ord("A")
    quote_buy = (pl.col("ask") != UNDEF_PRICE) & (pl.col("price") >= pl.col("ask"))
    quote_sell = (pl.col("bid") != UNDEF_PRICE) & (pl.col("price") <= pl.col("bid"))
    t = t.with_columns(
        aggressor=pl.when(pl.col("side") == b).then(1).when(pl.col("side") == s).then(-1)
        .when(quote_buy).then(1).when(quote_sell).then(-1).otherwise(0),
        window=pl.col("ts_event") // WINDOW_NS * WINDOW_NS,
    )
    g = t.group_by("instrument_id", "window").agg(
        bid_volume=pl.col("size").filter(pl.col("aggressor") == -1).sum(),
        ask_volume=pl.col("size").filter(pl.col("aggressor") == 1).sum(),
        unknown_volume=pl.col("size").filter(pl.col("aggressor") == 0).sum(),
        buy_trades=(pl.col("aggressor") == 1).sum().cast(pl.UInt32),
        sell_trades=(pl.col("aggressor") == -1).sum().cast(pl.UInt32),
        unknown_trades=(pl.col("aggressor") == 0).sum().cast(pl.UInt32),
        notional=(pl.col("price").cast(pl.Float64) / 1e9 * pl.col("size")).sum(),
        max_trade_size=pl.col("size").max().cast(pl.UInt32),
        first_trade_ts=pl.col("ts_event").min(), last_trade_ts=pl.col("ts_event").max(),
    )
    return g.join(defs, on="instrument_id", how="left").with_columns(
        window_start=pl.from_epoch("window", time_unit="ns").dt.replace_time_zone("UTC"),
    ).drop("window")


def main(out: Path, files: list[Path]) -> None:
    """Aggregate every (definition, tbbo) pair of ``files`` into ``out``'s chdb."""
    session = chdb.session.Session(str(out))
    session.query("CREATE DATABASE IF NOT EXISTS anchor")
    session.query(DDL)
    rows = volume = 0
    for def_path, tbbo_path in zip(files[::2], files[1::2], strict=True):
        frame = windows(tbbo_path, definitions(def_path))
        table = frame.select(  # noqa: F841 - read by name by chdb Python()
            "window_start", "instrument_id", "raw_symbol", "strike", "option_type", "expiration",
            "bid_volume", "ask_volume", "unknown_volume", "buy_trades", "sell_trades",
            "unknown_trades", "notional", "max_trade_size", "first_trade_ts", "last_trade_ts",
        ).to_arrow()
        session.query("INSERT INTO anchor.windows SELECT * FROM Python(table)")
        rows += frame.height
        volume += int(frame["bid_volume"].sum() + frame["ask_volume"].sum()
                      + frame["unknown_volume"].sum())
    stored = session.query("SELECT count() FROM anchor.windows", "CSV").bytes().decode().strip()
    session.close()
    print(f"ANCHOR rows={rows} stored={stored} volume={volume}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])

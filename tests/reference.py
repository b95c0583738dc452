"""Independent reference: trades → per-window sides with polars over databento's decoder."""

from __future__ import annotations

from pathlib import Path

import databento as db
import numpy as np
import polars as pl

UNDEF = 2**63 - 1
F_SNAPSHOT = 32


def trades_frame(path: Path | str) -> pl.DataFrame:
    """Trade records of a DBN file, decoded by databento (not by the project)."""
    a = db.DBNStore.from_file(path).to_ndarray()
    keep = (a["action"] == b"T") & ((a["flags"] & F_SNAPSHOT) == 0)
    a = a[keep]
    has_bbo = "bid_px_00" in a.dtype.names
    return pl.DataFrame(
        {
            "ts": a["ts_event"].astype(np.int64),
            "iid": a["instrument_id"].astype(np.int64),
            "price": a["price"].astype(np.int64),
            "size": a["size"].astype(np.int64),
            "flag": np.where(a["side"] == b"B", 1, np.where(a["side"] == b"A", -1, 0)),
            "bid": a["bid_px_00"].astype(np.int64) if has_bbo else np.full(len(a), UNDEF),
            "ask": a["ask_px_00"].astype(np.int64) if has_bbo else np.full(len(a), UNDEF),
        }
    )


def spread_legs_frame(definition_paths: list[Path]) -> pl.DataFrame:
    """(spread, leg, leg_side) of every DBN v3 spread leg record, decoded by databento."""
    frames = []
    for path in definition_paths:
        a = db.DBNStore.from_file(path).to_ndarray()
        if "leg_count" not in a.dtype.names:
            continue
        a = a[a["leg_count"] > 0]
        frames.append(pl.DataFrame({
            "spread": a["instrument_id"].astype(np.int64),
            "leg": a["leg_instrument_id"].astype(np.int64),
            "leg_side": np.where(a["leg_side"] == b"B", 1, np.where(a["leg_side"] == b"A", -1, 0)),
        }))
    if not frames:
        return pl.DataFrame(schema={"spread": pl.Int64, "leg": pl.Int64, "leg_side": pl.Int64})
    return pl.concat(frames).unique()


def lee_ready_windows(df: pl.DataFrame, window_s: int = 300,
                      legs: pl.DataFrame | None = None) -> dict[tuple[int, int], dict]:
    """(instrument_id, window_start_s) → bid/ask/unknown volume and trade count.

    flag, else quote rule vs mid, else tick test with zero ticks carrying the
    last non-zero change, per instrument and CME trading day (the day rolls at
    17:00 America/Chicago: polars' time-zone conversion, shifted by 7 h).
    With ``legs`` (:func:`spread_legs_frame`): a side-N print on a leg's instrument at the
    ts of a print of its spread takes spread flag × leg side and stays out of the tick test.
    """
    df = df.with_row_index("row")
    leg_rows = pl.DataFrame(schema={"row": pl.UInt32, "leg_value": pl.Int64})
    if legs is not None and legs.height:
        spread_prints = df.join(legs, left_on="iid", right_on="spread").select(
            "ts", pl.col("leg").alias("iid"), (pl.col("flag") * pl.col("leg_side")).alias("leg_value"),
            pl.col("row").alias("spread_row"))
        first = spread_prints.sort("spread_row").unique(["ts", "iid"], keep="first")
        leg_rows = (df.filter(pl.col("flag") == 0).filter(~pl.col("iid").is_in(legs["spread"]))
                    .join(first, on=["ts", "iid"]).select("row", "leg_value"))
    df = df.join(leg_rows, on="row", how="left")
    session = (pl.from_epoch("ts", time_unit="ns").dt.replace_time_zone("UTC")
               .dt.convert_time_zone("America/Chicago").dt.offset_by("7h").dt.date())
    outright = df.filter(pl.col("leg_value").is_null()).with_columns(session=session).with_columns(
        chg=(pl.col("price") - pl.col("price").shift(1).over("iid", "session")).sign(),
    ).with_columns(
        tick=pl.when(pl.col("chg") != 0).then(pl.col("chg")).otherwise(None)
        .forward_fill().over("iid", "session").fill_null(0),
        quote=pl.when((pl.col("bid") != UNDEF) & (pl.col("ask") != UNDEF)
                      & (pl.col("bid") <= pl.col("ask")))
        .then((2 * pl.col("price") - pl.col("bid") - pl.col("ask")).sign())
        .otherwise(0),
    ).with_columns(
        side=pl.when(pl.col("flag") != 0).then(pl.col("flag"))
        .when(pl.col("quote") != 0).then(pl.col("quote"))
        .otherwise(pl.col("tick")),
    ).select("iid", "ts", "size", "side")
    leg_prints = df.filter(pl.col("leg_value").is_not_null()).select(
        "iid", "ts", "size", pl.col("leg_value").alias("side"))
    both = pl.concat([outright, leg_prints.cast(outright.schema)]).with_columns(
        w=pl.col("ts") // (window_s * 10**9) * window_s)
    g = both.group_by("iid", "w").agg(
        bid=pl.col("size").filter(pl.col("side") == -1).sum(),
        ask=pl.col("size").filter(pl.col("side") == 1).sum(),
        unknown=pl.col("size").filter(pl.col("side") == 0).sum(),
        trades=pl.len(),
    )
    return {
        (r["iid"], r["w"]): dict(bid=r["bid"], ask=r["ask"], unknown=r["unknown"],
                                 trades=r["trades"])
        for r in g.iter_rows(named=True)
    }

"""Run the dataflow in-process and tally its outputs (test helper)."""

from __future__ import annotations

from pathlib import Path

from bytewax.testing import TestingSink, run_main

from flows.ifd import build_flow
from models.records import BatchStats, WindowResult
from models.settings import Settings

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def run_flow(tmp_path: Path, sources: list[Path | str], **overrides: object) -> list[object]:
    """Run the real dataflow in-process; return every output item in emission order."""
    settings = Settings(
        source=",".join(str(s) for s in sources),
        data_dir=tmp_path,
        progress_interval_s=0,
        **overrides,
    )
    out: list[object] = []
    run_main(build_flow(settings, sink=TestingSink(out)))
    return out


def windows(items: list[object]) -> list[WindowResult]:
    return [i for i in items if isinstance(i, WindowResult)]


def stats(items: list[object]) -> list[BatchStats]:
    return [i for i in items if isinstance(i, BatchStats)]


def per_window(items: list[object], by: str = "key") -> dict[tuple[object, int], dict[str, int]]:
    """Final numbers per (contract ``key`` or ``instrument_id``, window start in s).

    Sums every result's parts, corrections included.
    """
    out: dict[tuple[object, int], dict[str, int]] = {}
    for result in windows(items):
        for p in result.parts.to_parts():
            row = out.setdefault((getattr(p, by), p.window_start_ns // 10**9),
                                 dict(bid=0, ask=0, unknown=0, trades=0))
            row["bid"] += p.bid_volume
            row["ask"] += p.ask_volume
            row["unknown"] += p.unknown_volume
            row["trades"] += p.total_trades
    return out


def contract_rows(items: list[object], *, corrections: bool | None = None) -> list:
    """Every WindowPart row of every window result (optionally only/no corrections)."""
    return [
        p
        for r in windows(items)
        if corrections is None or r.correction == corrections
        for p in r.parts.to_parts()
    ]


def stored_windows(data_dir: Path) -> dict[tuple[int, int], dict[str, int]]:
    """(instrument_id, window_start_s) → side volumes and trades, read back from chdb."""
    from sinks.clickhouse import ChdbStore

    store = ChdbStore(data_dir / "chdb")
    try:
        rows = store.query_arrow(
            "SELECT instrument_id, toUnixTimestamp(window_start) AS w, bid_volume AS bid,"
            " ask_volume AS ask, unknown_volume AS unknown, total_trades AS trades"
            " FROM ifd.pressure_metrics"
        ).to_pylist()
    finally:
        store.close()
    return {(r.pop("instrument_id"), r.pop("w")): r for r in rows}

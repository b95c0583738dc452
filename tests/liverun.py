"""Run the live dataflow in-process against a local gateway and read ClickHouse back (test helper)."""

from __future__ import annotations

from pathlib import Path

from bytewax.testing import run_main

from flows.ifd import build_flow
from models.errors import clear_fatal_errors, fatal_errors
from models.settings import LiveSettings, Settings
from sinks.clickhouse import ChdbStore
from tests.flowrun import stored_windows

KEY = "db-test_local_gateway_ZQXJW"


def live_settings(port: int, **overrides: object) -> LiveSettings:
    """Live settings for a local gateway: fast reconnects and heartbeats, idle exit."""
    values: dict[str, object] = dict(
        api_key=KEY, gateway="127.0.0.1", port=port, symbols="NQ.OPT", stype_in="parent",
        schema_name="tbbo", session="always", reconnect_initial_s=0.01, reconnect_max_s=0.05,
        heartbeat_interval_s=1, heartbeat_grace_s=0.5, idle_exit_s=2.5, batch_records=400,
        replay_horizon_s=30 * 86_400.0,  # the generated day is in the past
    )
    values.update(overrides)
    return LiveSettings(**values)  # type: ignore[arg-type]


def run_live(tmp_path: Path, port: int, alerts: object = None, **overrides: object) -> dict:
    """Run the live flow to its idle exit; return stored windows, usage rows and fatal errors."""
    settings = Settings(mode="live", data_dir=tmp_path, progress_interval_s=0,
                        scoring={"enabled": False})
    clear_fatal_errors()
    run_main(build_flow(settings, live=live_settings(port, **overrides), alerts=alerts))
    store = ChdbStore(tmp_path / "chdb")
    try:
        usage = store.query_arrow("SELECT * FROM ifd.usage FINAL ORDER BY minute").to_pylist()
        parts = store.query_arrow(
            "SELECT count() AS n, uniqExact(batch_seq) AS units FROM ifd.pressure_parts FINAL"
        ).to_pylist()[0]
    finally:
        store.close()
    return {"windows": stored_windows(tmp_path), "usage": usage, "parts": parts,
            "fatal": fatal_errors()}

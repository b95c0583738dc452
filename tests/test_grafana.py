"""Grafana boards, provisioning and the docker-compose deployment, checked without Grafana or Docker.

Every panel target's SQL and every template-variable query runs on chdb (a real ClickHouse engine)
after a real replay of the bundled sample, with Grafana's macros and variables expanded as Grafana
and the ClickHouse plugin (grafana-clickhouse-datasource v4, ``pkg/macros/macros.go``) expand them:

=========================  ===============================================================
in the dashboard SQL       sent to chdb by this test
=========================  ===============================================================
``$__timeFilter(col)``     ``col >= toDateTime(<from, s>) AND col <= toDateTime(<to, s>)``
``$__timeInterval(col)``   ``toStartOfInterval(toDateTime(col), INTERVAL 300 second)``
``$__interval_s``          ``300``
``$__fromTime``            ``toDateTime(<from, s>)`` (``$__toTime`` likewise)
``${var}`` / ``$var``      the variable's single value, unquoted (multi-value → test error)
``${var:singlequote}``     ``'v1','v2'``
``${var:csv}``             ``v1,v2``
=========================  ===============================================================

Time range: the Flow and Contract boards use event time, from the sample's first to its last
5-minute window of NQZ6; the Health board uses wall-clock time (when each batch's counters were
written), from the first to the last ``inserted_at`` in ``ifd.ingest_batches``.

Variables resolve in the dashboard's order by running each variable's own expanded query and
choosing as Grafana does on a fresh load: every value for a multi-value variable with "All",
the first value otherwise. So ``${underlying}`` → ``NQZ6``, ``${expiration:singlequote}`` → the
five sample expiries, ``${option_type:singlequote}`` → ``'C','P'``, ``${strike_min}``/``${strike_max}``
→ the lowest/highest strike, ``${contract}`` → the first contract that signalled (then by largest
window imbalance).

The replay fixture runs ``python -m bytewax.run flows.ifd`` three ways into one tmp chdb: the
default six-day NQ.OPT sample; a small trades file with bad and undefined-instrument trades (so the
dead-letter and unknown-instrument panels have rows); the real ESH4 MBO file (footprint, icebergs
and absorption for the L3 board, whose range spans its footprint windows); then
``python -m tools.baseline_job`` for the scored day (so ``ifd.baselines`` has rows).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import databento as db
import numpy as np
import pyarrow as pa
import pytest
import yaml

from models.settings import SECTIONS, Settings
from sinks.clickhouse import ChdbStore
from tests.dbnfiles import NS, PX, T0, trades_file
from tests.flowrun import REAL

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml"
DASHBOARD_PROVIDER = REPO / "grafana" / "provisioning" / "dashboards" / "ifd.yaml"
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
READONLY_USER_XML = REPO / "deploy" / "clickhouse" / "users.d" / "grafana-readonly.xml"
PLUGIN = "grafana-clickhouse-datasource"
INTERVAL_S = 300
UNDEF_PRICE = 2**63 - 1
ESH4_MBO = "esh4-glbx-mdp3-20231225.mbo.dbn.zst"

# Panels over ifd.usage: the live source (issue 4, IFD_MODE=live) writes that table, a replay writes no
# rows. Their SQL runs on the replay like every other panel (shape checked, empty allowed), and again
# on a copy of ifd.usage holding known rows (test_live_usage_panels_on_usage_rows).
LIVE_ONLY = {
    ("ifd-health", "Reconnects (live source)", "A"): "ifd.usage is written by the live source only",
    ("ifd-health", "Databento budget used", "A"): "ifd.usage is written by the live source only",
    ("ifd-health", "Latency p50 / p95 / p99 by stage (live)", "A"):
        "ifd.latency is written by live runs only",
    ("ifd-health", "Backfills (live source)", "A"): "ifd.backfills is written by the live source only",
    ("ifd-health", "Source mode (live source)", "A"): "ifd.usage is written by the live source only",
}

# The columns every target returns, in order: a panel's field overrides, links and the heatmap's
# series labels depend on these names.
EXPECTED_COLUMNS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("ifd-flow", "Net pressure by strike — calls", "A"): ("time", "strike_label", "net_pressure"),
    ("ifd-flow", "Net pressure by strike — puts", "A"): ("time", "strike_label", "net_pressure"),
    ("ifd-flow", "Top contracts by imbalance", "A"): (
        "symbol", "expiry", "type", "strike_price", "ask", "bid", "net_pressure", "imbalance", "trades",
        "contract_key"),
    ("ifd-flow", "Log imbalance log₂((ask + 1) / (bid + 1)) — chosen strikes", "A"): (
        "time", "series", "log_imbalance"),
    ("ifd-flow", "IFD signals", "A"): (
        "time", "symbol", "direction", "signal_class", "confidence", "reason", "contract_key"),
    ("ifd-contract", "Bid / ask volume", "A"): ("time", "bid", "ask", "unknown"),
    ("ifd-contract", "Trades", "A"): ("time", "buy_trades", "sell_trades", "trades"),
    ("ifd-contract", "Average trade size vs baseline", "A"): ("time", "avg_trade_size"),
    ("ifd-contract", "Average trade size vs baseline", "B"): ("time", "baseline_at_signal"),
    ("ifd-contract", "Average trade size vs baseline", "C"): ("time", "baseline_job_avg_size"),
    ("ifd-contract", "Windows", "A"): (
        "time", "bid_volume", "ask_volume", "unknown_volume", "pressure_ratio", "dominant_side",
        "dominance_confidence", "total_trades", "avg_trade_size", "max_trade_size", "vwap"),
    ("ifd-contract", "Signals for this contract", "A"): (
        "time", "direction", "signal_class", "confidence", "volume_z", "dominance", "size_ratio",
        "mm_score", "baseline_scope", "baseline_avg_size", "reason"),
    ("ifd-health", "Records/s", "A"): ("time", "records_per_s", "trades_per_s"),
    ("ifd-health", "Records and trades per batch", "A"): ("time", "records", "trades"),
    ("ifd-health", "Lag: event → processed (live) and processed → stored", "A"): (
        "time", "event_lag_s", "write_lag_s"),
    ("ifd-health", "Dead letters and unknown instruments", "A"): (
        "time", "dead_letters", "unknown_instrument_trades"),
    ("ifd-health", "Totals in range", "A"): (
        "batches", "sources", "records", "trades", "dead_letters", "unknown_instrument_trades", "read",
        "latest_event"),
    ("ifd-health", "Dead letters by reason", "A"): (
        "reason", "records", "files", "first_event", "last_event"),
    ("ifd-health", "Latest dead letters", "A"): (
        "time", "source", "record_index", "reason", "rtype", "instrument_id", "ts_event", "price_raw",
        "size"),
    ("ifd-health", "Reconnects (live source)", "A"): ("time", "reconnects"),
    ("ifd-health", "Databento budget used", "A"): ("time", "cost_usd", "cumulative_cost_usd"),
    ("ifd-health", "Latency p50 / p95 / p99 by stage (live)", "A"): (
        "time", "stage", "p50_ms", "p95_ms", "p99_ms"),
    ("ifd-health", "Source mode (live source)", "A"): ("time", "source", "mode"),
    ("ifd-health", "Backfills (live source)", "A"): (
        "time", "source", "outcome", "range_start", "range_end", "records", "duplicates", "cost_usd",
        "budget_usd", "seconds", "error"),
    ("ifd-l3", "Footprint — delta by price", "A"): ("time", "price_level", "delta"),
    ("ifd-l3", "Delta and CVD", "A"): ("time", "delta", "cvd"),
    ("ifd-l3", "Iceberg and absorption prices", "A"): ("time", "iceberg_price"),
    ("ifd-l3", "Iceberg and absorption prices", "B"): ("time", "absorption_price"),
    ("ifd-l3", "Iceberg zones", "A"): (
        "side", "price", "icebergs", "executed", "first_ts", "last_ts", "retests", "held", "broken"),
    ("ifd-l3", "Icebergs", "A"): (
        "time", "kind", "side", "price", "refills", "peak_size", "executed", "estimated_total",
        "state"),
    ("ifd-l3", "Absorption events", "A"): (
        "time", "side", "price", "absorbed", "start_size", "fills", "duration_s", "outcome"),
}

# Targets that may return no rows on the sample replay; each entry says why.
ALLOWED_EMPTY: dict[tuple[str, str, str], str] = {**LIVE_ONLY}


# ------------------------------------------------------------------------------------ dashboards


def _load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


DASHBOARDS = _load_dashboards()


@dataclass(frozen=True)
class Target:
    uid: str
    panel: str
    ref_id: str
    sql: str
    fmt: int  # plugin query format: 0 time series, 1 table

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.uid, self.panel, self.ref_id)


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


TARGETS = [
    Target(board["uid"], panel["title"], t["refId"], t["rawSql"], t["format"])
    for board in DASHBOARDS.values()
    for panel in _panels(board)
    for t in panel.get("targets", [])
]


def _datasource_refs(node: Any) -> list[Any]:
    """Every value of a ``datasource`` key anywhere in a dashboard."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found.extend(_datasource_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_datasource_refs(item))
    return found


def test_four_dashboards_with_unique_stable_uids():
    assert set(DASHBOARDS) == {"flow", "contract", "health", "l3"}
    uids = [b["uid"] for b in DASHBOARDS.values()]
    assert sorted(uids) == ["ifd-contract", "ifd-flow", "ifd-health", "ifd-l3"]
    titles = [b["title"] for b in DASHBOARDS.values()]
    assert len(set(titles)) == len(titles)
    for board in DASHBOARDS.values():
        ids = [p["id"] for p in _panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]
        panel_titles = [p["title"] for p in _panels(board)]
        assert len(panel_titles) == len(set(panel_titles)), board["uid"]


def test_every_datasource_reference_is_provisioned():
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    by_uid = {d["uid"]: d for d in provisioned}
    refs = [ref for board in DASHBOARDS.values() for ref in _datasource_refs(board)]
    sql_refs = [r for r in refs if not (isinstance(r, dict) and r.get("uid") == "-- Grafana --")]
    assert len(sql_refs) >= len(TARGETS)  # every target carries one
    for ref in sql_refs:
        assert isinstance(ref, dict), f"datasource by name is fragile: {ref!r}"
        assert ref["uid"] in by_uid, ref
        assert ref["type"] == by_uid[ref["uid"]]["type"] == PLUGIN


def test_chain_variables_present_and_from_pressure_metrics():
    for uid in ("ifd-flow", "ifd-contract"):
        board = next(b for b in DASHBOARDS.values() if b["uid"] == uid)
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:5] == ["underlying", "expiration", "option_type", "strike_min", "strike_max"]
        for var in board["templating"]["list"]:
            assert var["type"] == "query"
            assert "FROM ifd.pressure_metrics" in var["query"]
            assert var["datasource"]["uid"] == "ifd-clickhouse"


def test_every_query_filters_on_time_and_pressure_reads_lead_with_window_start():
    queries = [(t.key, t.sql) for t in TARGETS]
    queries += [((b["uid"], v["name"], "var"), v["query"])
                for b in DASHBOARDS.values() for v in b["templating"]["list"]]
    for key, sql in queries:
        assert "$__timeFilter(" in sql, key
        if re.search(r"ifd\.(pressure_metrics|pressure_parts|ifd_signals)\b", sql):
            assert "$__timeFilter(window_start)" in sql, key
    assert {t.key for t in TARGETS} == set(EXPECTED_COLUMNS)


# ------------------------------------------------------------------------------------ replay


@dataclass
class Replay:
    store: ChdbStore
    data_dir: Path
    flow_range_s: tuple[int, int]
    health_range_s: tuple[int, int]
    l3_range_s: tuple[int, int]


def _run(args: list[str], env: dict[str, str], cwd: Path) -> None:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    data_dir = tmp_path_factory.mktemp("grafana-replay")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFD_")}
    env.update(IFD_DATA_DIR=str(data_dir), IFD_PROGRESS_INTERVAL_S="0", PYTHONPATH=str(REPO))
    # cwd = the tmp dir, so that a developer's repo-level .env cannot redirect the replay
    _run(["-m", "bytewax.run", "flows.ifd"], env, data_dir)
    # bad and undefined-instrument trades (a 2023 day, far from the sample): dead letters + unknown ids
    bad = trades_file(data_dir / "bad.trades.dbn.zst", [T0 + NS, T0 + 2 * NS, T0 + 3 * NS, T0 + 4 * NS],
                      [7, 7, 7, 8], [PX, UNDEF_PRICE, PX, PX], [4, 5, 0, 2], "B")
    _run(["-m", "bytewax.run", "flows.ifd"], {**env, "IFD_SOURCE": str(bad)}, data_dir)
    # the real ESH4 MBO file: footprint, icebergs and absorption for the L3 board
    _run(["-m", "bytewax.run", "flows.ifd"], {**env, "IFD_SOURCE": str(REAL / ESH4_MBO)}, data_dir)
    days = sorted(re.search(r"(\d{8})\.tbbo", p.name).group(1)  # type: ignore[union-attr]
                  for p in (data_dir / "sample").glob("*.tbbo.dbn.zst"))
    last_day = f"{days[-1][:4]}-{days[-1][4:6]}-{days[-1][6:]}"
    _run(["-m", "tools.baseline_job", "--as-of", last_day], env, data_dir)

    store = ChdbStore(data_dir / "chdb")
    flow = store.query_arrow(
        "SELECT toUnixTimestamp(min(window_start)) AS lo, toUnixTimestamp(max(window_start)) AS hi "
        "FROM ifd.pressure_metrics WHERE underlying = 'NQZ6'").to_pylist()[0]
    # the health boards use write time: span every table they read, since on a loaded machine
    # the dead letters can be flushed seconds after the last batch row
    health = store.query_arrow(
        "SELECT toUnixTimestamp(min(t)) AS lo, toUnixTimestamp(max(t)) + 1 AS hi FROM ("
        " SELECT inserted_at AS t FROM ifd.ingest_batches"
        " UNION ALL SELECT inserted_at AS t FROM ifd.dead_letters)").to_pylist()[0]
    l3 = store.query_arrow(
        "SELECT toUnixTimestamp(min(window_start)) AS lo, "
        "toUnixTimestamp(max(window_start)) + 300 AS hi FROM ifd.footprint").to_pylist()[0]
    yield Replay(store, data_dir, (flow["lo"], flow["hi"]), (health["lo"], health["hi"]),
                 (l3["lo"], l3["hi"]))
    store.close()


# ------------------------------------------------------------------------------------ expansion

_MACRO_RE = re.compile(r"\$__(timeFilter|timeInterval)\(\s*([^()]+?)\s*\)")
_VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def expand(sql: str, time_range_s: tuple[int, int], variables: dict[str, list[str]]) -> str:
    """Grafana's variable interpolation, then the plugin's macros (see the module docstring)."""
    lo, hi = time_range_s

    def macro(m: re.Match[str]) -> str:
        name, column = m.group(1), m.group(2)
        if name == "timeFilter":
            return f"{column} >= toDateTime({lo}) AND {column} <= toDateTime({hi})"
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {INTERVAL_S} second)"

    out = _MACRO_RE.sub(macro, sql)
    out = out.replace("$__interval_s", str(INTERVAL_S))
    out = out.replace("$__fromTime", f"toDateTime({lo})").replace("$__toTime", f"toDateTime({hi})")

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        fmt = m.group(2)
        values = variables[name]
        assert values, f"variable {name} has no value"
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
        if fmt == "csv":
            return ",".join(values)
        assert fmt is None, f"unsupported format {fmt} for {name}"
        assert len(values) == 1, f"{name} is multi-valued: use ${{{name}:singlequote}} or :csv"
        return values[0]

    out = _VAR_RE.sub(var, out)
    assert "$" not in out, out
    return out


def _grafana_text(value: Any) -> str:
    """A variable value as Grafana shows it (a JSON number 21500.0 is '21500')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def resolve_variables(store: ChdbStore, board: dict[str, Any],
                      time_range_s: tuple[int, int]) -> dict[str, list[str]]:
    """Run each template variable's query in order; choose values like a fresh Grafana load."""
    chosen: dict[str, list[str]] = {}
    for var in board["templating"]["list"]:
        table = store.query_arrow(expand(var["query"], time_range_s, chosen))
        values = [_grafana_text(v) for v in table.column(0).to_pylist()] if table.num_rows else []
        assert values, f"{board['uid']}: variable {var['name']} has no options on the sample"
        chosen[var["name"]] = values if (var["multi"] and var["includeAll"]) else values[:1]
    return chosen


def _board(uid: str) -> dict[str, Any]:
    return next(b for b in DASHBOARDS.values() if b["uid"] == uid)


def _range_for(replay: Replay, uid: str) -> tuple[int, int]:
    if uid == "ifd-l3":
        return replay.l3_range_s
    return replay.health_range_s if uid == "ifd-health" else replay.flow_range_s


@pytest.fixture(scope="module")
def variables(replay: Replay) -> dict[str, dict[str, list[str]]]:
    return {b["uid"]: resolve_variables(replay.store, b, _range_for(replay, b["uid"]))
            for b in DASHBOARDS.values()}


def _describe(store: ChdbStore, sql: str) -> list[tuple[str, str]]:
    desc = store.query_arrow(f"DESCRIBE TABLE ({sql})").to_pydict()
    return list(zip(desc["name"], desc["type"], strict=True))


# ------------------------------------------------------------------------------------ SQL on chdb


def test_variables_resolve_to_the_sample_chain(variables):
    flow = variables["ifd-flow"]
    assert flow["underlying"] == ["NQZ6"]
    assert flow["option_type"] == ["C", "P"]
    assert len(flow["expiration"]) == 5
    assert float(flow["strike_min"][0]) < float(flow["strike_max"][0])
    assert len(flow["strikes"]) == 1  # multi-value without "All": the most active strike by default
    assert variables["ifd-contract"]["contract"][0].startswith("NQZ6|")


@pytest.mark.parametrize("target", TARGETS, ids=[f"{t.uid}/{t.panel}/{t.ref_id}" for t in TARGETS])
def test_panel_sql_runs_on_the_replay_with_expected_shape(replay, variables, target, row_counts):
    sql = expand(target.sql, _range_for(replay, target.uid), variables[target.uid])
    columns = _describe(replay.store, sql)
    assert tuple(name for name, _ in columns) == EXPECTED_COLUMNS[target.key]
    if target.fmt == 0:  # time series: the plugin needs a DateTime column called time
        assert dict(columns)["time"].startswith("DateTime"), columns
    table = replay.store.query_arrow(sql)
    row_counts[target.key] = table.num_rows
    if target.key not in ALLOWED_EMPTY:
        assert table.num_rows > 0, f"{target.key} returned no rows on the sample replay"


@pytest.fixture(scope="module")
def row_counts() -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    yield counts
    if counts:  # shown with -s or -rA; the closing note quotes these
        print("\npanel row counts on the sample replay:")
        for (uid, panel, ref), n in sorted(counts.items()):
            print(f"  {uid:13} {panel} [{ref}]: {n}")


def test_sample_specific_panel_content(replay, variables):
    def run(uid: str, panel: str, ref: str = "A") -> pa.Table:
        target = next(t for t in TARGETS if t.key == (uid, panel, ref))
        return replay.store.query_arrow(expand(target.sql, _range_for(replay, uid), variables[uid]))

    signals = run("ifd-flow", "IFD signals")
    truth = replay.store.query_arrow("SELECT count() AS n FROM ifd.ifd_signals FINAL "
                                     "WHERE underlying = 'NQZ6'").to_pylist()[0]["n"]
    assert signals.num_rows == truth > 0
    assert set(signals.column("direction").to_pylist()) <= {"BUY", "SELL"}
    heat = run("ifd-flow", "Net pressure by strike — calls").to_pydict()
    total = replay.store.query_arrow(
        "SELECT sum(toInt64(ask_volume)) - sum(toInt64(bid_volume)) AS net FROM ifd.pressure_metrics "
        "WHERE underlying = 'NQZ6' AND option_type = 'C'").to_pylist()[0]["net"]
    assert sum(heat["net_pressure"]) == total  # whole sample in range: nothing lost by bucketing
    dead = run("ifd-health", "Dead letters by reason").to_pydict()
    assert dict(zip(dead["reason"], dead["records"], strict=True)) == {"undef_price": 1, "zero_size": 1}
    totals = run("ifd-health", "Totals in range").to_pylist()[0]
    esh4 = db.DBNStore.from_file(REAL / ESH4_MBO).to_ndarray()
    esh4_trades = int(((esh4["action"] == b"T") & ((esh4["flags"] & 32) == 0)).sum())
    # instruments 7 and 8 have no definition, nor has ESH4 (its MBO file comes without one)
    assert totals["unknown_instrument_trades"] == 2 + esh4_trades
    footprint = run("ifd-l3", "Footprint — delta by price").to_pydict()
    assert sum(footprint["delta"]) == int(esh4["size"][(esh4["action"] == b"T")
                                                     & (esh4["side"] == b"B")].sum()) - int(
        esh4["size"][(esh4["action"] == b"T") & (esh4["side"] == b"A")].sum())
    baseline = run("ifd-contract", "Average trade size vs baseline", "C")
    assert baseline.num_rows > 0  # baseline job rows joined to the contract's windows of the as-of day


def test_heatmap_query_reads_by_primary_key(replay, variables):
    target = next(t for t in TARGETS if t.key == ("ifd-flow", "Net pressure by strike — calls", "A"))
    lo, hi = replay.flow_range_s
    narrow = (hi - 3600, hi)  # the last hour: most granules must be skipped
    sql = expand(target.sql, narrow, variables["ifd-flow"])
    plan = "\n".join(replay.store.query_arrow(f"EXPLAIN indexes = 1 {sql}").column(0).to_pylist())
    primary = plan.split("PrimaryKey", 1)[1]
    assert "window_start" in primary.split("Condition:", 1)[1].splitlines()[0]
    selected, total = map(int, re.search(r"Granules: (\d+)/(\d+)", primary).groups())  # type: ignore[union-attr]
    assert selected < total


def test_live_usage_panels_on_usage_rows(replay, variables):
    usage_targets = [t for t in TARGETS if "ifd.usage" in t.sql]
    assert {t.key for t in usage_targets} == {k for k, why in LIVE_ONLY.items() if "ifd.usage" in why}
    for uid, title, _ref in LIVE_ONLY:
        panel = next(p for p in _panels(_board(uid)) if p["title"] == title)
        assert "filled by the live source (issue" in panel["description"].lower()
    # a copy of the real ifd.usage with two live sources over two minutes (one minute written twice)
    lo = 1_761_436_800  # 2026-10-26 00:00 UTC, a 300-s boundary; the range below spans one bucket
    replay.store.command("CREATE DATABASE IF NOT EXISTS usage_check")
    replay.store.command("CREATE TABLE usage_check.usage AS ifd.usage")
    rows = [(lo, "a", 1.0, 1, "live"), (lo, "b", 0.5, 0, "down"), (lo + 60, "a", 0.25, 2, "historical"),
            (lo + 60, "a", 0.25, 2, "historical")]
    values = ", ".join(f"(toDateTime({m}), '{s}', 100, 4096, {c}, {r}, 12.5, '', '{mode}')"
                       for m, s, c, r, mode in rows)
    replay.store.command("INSERT INTO usage_check.usage (minute, source, records, bytes, est_cost_usd, "
                         f"reconnects, lag_ms, last_error, mode) VALUES {values}")
    try:
        results = {}
        for target in usage_targets:
            sql = expand(target.sql.replace("ifd.usage", "usage_check.usage"),
                         (lo, lo + 299), variables[target.uid])
            results[target.panel] = replay.store.query_arrow(sql).to_pydict()
    finally:
        replay.store.command("DROP DATABASE usage_check")
    # one 300-s bucket holds both minutes; the duplicate row of minute 2 counts once (FINAL)
    assert results["Reconnects (live source)"]["reconnects"] == [3]
    budget = results["Databento budget used"]
    assert budget["cost_usd"] == [1.75] and budget["cumulative_cost_usd"] == [1.75]
    # a bucket shows each source's worst minute: a was live then historical, b down
    mode = results["Source mode (live source)"]
    assert list(zip(mode["source"], mode["mode"], strict=True)) == [("a", "historical"), ("b", "down")]


def test_latency_panel_shows_each_stages_worst_minute(replay, variables):
    (target,) = [t for t in TARGETS if "ifd.latency" in t.sql]
    lo = 1_761_436_800  # a 300-s boundary; minutes lo and lo+60 share one bucket, lo+300 is the next
    replay.store.command("CREATE DATABASE IF NOT EXISTS latency_check")
    replay.store.command("CREATE TABLE latency_check.latency AS ifd.latency")
    rows = [(lo, "record", 1.0, 5.0, 9.0), (lo + 60, "record", 2.0, 4.0, 30.0),
            (lo, "window_written", 10.0, 20.0, 40.0), (lo + 300, "record", 3.0, 3.5, 4.0)]
    values = ", ".join(f"(toDateTime({m}), '{st}', 'host:1', 10, {a}, {b}, {c}, {c}, {a})"
                       for m, st, a, b, c in rows)
    replay.store.command("INSERT INTO latency_check.latency (minute, stage, process, samples, p50_ms, "
                         f"p95_ms, p99_ms, max_ms, mean_ms) VALUES {values}")
    try:
        sql = expand(target.sql.replace("ifd.latency", "latency_check.latency"), (lo, lo + 599),
                     variables[target.uid])
        got = replay.store.query_arrow(sql).to_pylist()
    finally:
        replay.store.command("DROP DATABASE latency_check")
    assert [(r["stage"], r["p50_ms"], r["p95_ms"], r["p99_ms"]) for r in got] == [
        ("record", 2.0, 5.0, 30.0), ("window_written", 10.0, 20.0, 40.0), ("record", 3.0, 3.5, 4.0)]


# ------------------------------------------------------------------------------------ provisioning


def test_datasource_provisioning_matches_compose_and_readonly_user():
    ds = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert len(ds) == 1
    (source,) = ds
    assert source["uid"] == "ifd-clickhouse" and source["type"] == PLUGIN
    data = source["jsonData"]
    assert data["defaultDatabase"] == "ifd"
    assert (data["protocol"], data["port"]) == ("native", 9000)
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert data["host"] in compose["services"]
    password = source["secureJsonData"]["password"]
    env_name = re.fullmatch(r"\$\{(\w+)\}", password).group(1)  # type: ignore[union-attr]
    assert env_name in compose["services"]["grafana"]["environment"]
    users = ET.parse(READONLY_USER_XML).getroot()
    user = users.find(f"users/{data['username']}")
    assert user is not None, f"no users.d entry for {data['username']}"
    assert user.find("password").get("from_env") == env_name  # type: ignore[union-attr]
    profile = users.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    assert user.findtext("grants/query") == "GRANT SELECT ON ifd.*"


def test_dashboard_provider_points_at_the_mounted_dashboards():
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text(encoding="utf-8"))["providers"][0]
    path = provider["options"]["path"]
    grafana = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert mounts[path] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_initdb_sql_is_the_current_schema_rendering():
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_schema", REPO / "deploy" / "render_schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (REPO / "deploy" / "clickhouse" / "initdb" / "01-schema.sql").read_text(encoding="utf-8")
    assert committed == module.render(), "stale: run python deploy/render_schema.py"


# ------------------------------------------------------------------------------------ compose


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _flow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items()
            if "bytewax.run" in " ".join(map(str, svc.get("command", [])))}


def _arg(command: list[str], flag: str) -> str:
    return str(command[command.index(flag) + 1])


def test_compose_services_images_pinned_and_healthchecked():
    compose = _compose()
    services = compose["services"]
    assert {"clickhouse", "grafana"} <= set(services)
    flows = _flow_services(compose)
    assert len(flows) >= 2
    for name, svc in services.items():
        if "image" in svc and "build" not in svc:
            image = svc["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
    assert re.fullmatch(r"clickhouse/clickhouse-server:\d+\.\d+(\.\d+)*", services["clickhouse"]["image"])
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", services["grafana"]["image"])
    for name in ("clickhouse", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    plugins = services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert re.fullmatch(rf"{PLUGIN} \d+\.\d+\.\d+", plugins)
    ch_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["clickhouse"]["volumes"]}
    assert ch_mounts["/docker-entrypoint-initdb.d"] == "./deploy/clickhouse/initdb"
    assert ch_mounts["/etc/clickhouse-server/users.d/grafana-readonly.xml"] == \
        "./deploy/clickhouse/users.d/grafana-readonly.xml"
    assert "CLICKHOUSE_READONLY_PASSWORD" in services["clickhouse"]["environment"]


def test_flow_processes_form_one_bytewax_cluster():
    compose = _compose()
    flows = _flow_services(compose)
    addresses = {_arg(svc["command"], "-a") for svc in flows.values()}
    assert len(addresses) == 1, "every process needs the same -a list"
    (address_list,) = addresses
    hosts = [a.split(":")[0] for a in address_list.split(";")]
    ids = sorted(int(_arg(svc["command"], "-i")) for svc in flows.values())
    assert ids == list(range(len(flows)))
    for name, svc in flows.items():
        assert hosts[int(_arg(svc["command"], "-i"))] == name, f"{name} is not at its -i position in -a"
        assert _arg(svc["command"], "-r") == "/recovery"
        targets = {m.split(":")[1] for m in svc["volumes"]}
        assert {"/data", "/recovery"} <= targets
        depends = svc["depends_on"]
        assert depends["clickhouse"]["condition"] == "service_healthy"
        assert svc["build"]["dockerfile"] == "Dockerfile"
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.12-slim", dockerfile, re.M)
    assert "pip install" in dockerfile and " ." in dockerfile


def _app_variables() -> set[str]:
    """Every environment variable the settings tree reads (the root and each section)."""
    names = set()
    for model in (Settings, *SECTIONS.values()):
        prefix = model.model_config["env_prefix"]
        for name, field in model.model_fields.items():
            if name in SECTIONS and model is Settings:
                continue  # a section, read through its own prefix
            alias = field.validation_alias
            names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return {n for n in names if not n.startswith("BYTEWAX_")}  # bytewax's own, set by its CLI


_ASSIGN_RE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$")
NOT_PASSED_MARK = "[not passed by compose]"


def _env_example() -> dict[str, tuple[str, bool, str]]:
    """``name -> (value, active, comment above)`` for every assignment, active or commented out."""
    entries: dict[str, tuple[str, bool, str]] = {}
    comment = ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = _ASSIGN_RE.match(line)
        if m:
            assert m.group(1) not in entries, f"{m.group(1)} documented twice"
            entries[m.group(1)] = (m.group(2), not line.startswith("#"), comment)
            comment = ""
        elif line.startswith("#"):
            comment = line.lstrip("# ").strip()
        else:
            comment = ""
    return entries


def test_env_example_documents_every_variable_without_secrets():
    entries = _env_example()
    missing = _app_variables() - set(entries)
    assert not missing, f"document in .env.example: {sorted(missing)}"
    for name, (value, active, comment) in entries.items():
        assert comment, f"{name} needs a one-line comment above it"
        if active and ("PASSWORD" in name or "KEY" in name or "URLS" in name):
            assert value.startswith("change-me") or value == "", f"{name}: no real secrets"
    compose_text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(\w+)", compose_text))
    assert used - set(entries) == set(), "compose uses undocumented variables"


def test_flow_services_environment_covers_every_setting():
    compose = _compose()
    entries = _env_example()
    for name, svc in _flow_services(compose).items():
        env = svc["environment"]
        assert "clickhouse:8123" in env["IFD_CLICKHOUSE_URL"], name
        assert env["IFD_DATA_DIR"] == "/data"
        for var in sorted(_app_variables()):
            if NOT_PASSED_MARK in entries[var][2]:
                assert var not in env, f"{name}: {var} is marked as not passed"
                continue
            assert var in env, f"{name}: pass {var} (or mark it '{NOT_PASSED_MARK}' in .env.example)"


# ------------------------------------------------------------------------------------ rendering


def test_query_types_are_the_plugins_values_and_match_the_format():
    for board in DASHBOARDS.values():
        for panel in _panels(board):
            for t in panel.get("targets", []):
                # grafana-clickhouse-datasource v4 (src/types/sql.ts QueryType): table, logs,
                # timeSeries, traces; the SQL format 0 is a time series, 1 a table
                expected = {0: "timeSeries", 1: "table"}[t["format"]]
                assert t["queryType"] == expected, (board["uid"], panel["title"])


def _heatmaps() -> list[tuple[str, dict[str, Any]]]:
    return [(b["uid"], p) for b in DASHBOARDS.values() for p in _panels(b) if p["type"] == "heatmap"]


def test_heatmap_colours_are_diverging_and_symmetric_around_zero():
    assert len(_heatmaps()) == 3
    for uid, panel in _heatmaps():
        color = panel["options"]["color"]
        assert color["scheme"] in ("RdBu", "PuOr", "BrBG"), (uid, panel["title"])  # colour-blind safe
        assert color["scale"] == "linear"  # an exponential scale would move 0 off the middle
        assert color["min"] == -color["max"] and color["max"] > 0


def test_heatmap_values_fill_the_fixed_colour_scale_on_the_replay(replay, variables):
    for uid, panel in _heatmaps():
        target = panel["targets"][0]
        sql = expand(target["rawSql"], _range_for(replay, uid), variables[uid])
        table = replay.store.query_arrow(sql)
        values = np.array(table.column(table.num_columns - 1).to_pylist(), dtype=float)
        limit = panel["options"]["color"]["max"]
        assert (values > 0).any() and (values < 0).any(), panel["title"]  # both colours in use
        # most cells sit inside the scale (it saturates only on the biggest prints) ...
        assert np.mean(np.abs(values) <= limit) >= 0.95, panel["title"]
        # ... and the scale is not so wide that everything looks neutral
        assert np.abs(values).max() >= limit / 10, panel["title"]


def test_log_imbalance_is_defined_everywhere_and_signed(replay, variables):
    target = next(t for t in TARGETS if t.panel.startswith("Log imbalance"))
    sql = expand(target.sql, _range_for(replay, target.uid), variables[target.uid])
    got = replay.store.query_arrow(sql).to_pydict()
    values = np.array(got["log_imbalance"], dtype=float)
    assert len(values) > 0 and np.isfinite(values).all()
    # independent: the panel's rows recomputed in Python from the raw windows it filters
    where = target.sql.split("FROM ifd.pressure_metrics", 1)[1].split("GROUP BY", 1)[0]
    raw = replay.store.query_arrow(expand(
        "SELECT toUnixTimestamp(window_start) AS t, option_type, strike, ask_volume, bid_volume "
        "FROM ifd.pressure_metrics" + where, _range_for(replay, target.uid),
        variables[target.uid])).to_pylist()
    sums: dict[tuple[int, str, float], list[int]] = {}
    for r in raw:
        cell = sums.setdefault((r["t"] // INTERVAL_S, r["option_type"], r["strike"]), [0, 0])
        cell[0] += r["ask_volume"]
        cell[1] += r["bid_volume"]
    want = sorted(float(np.log2((a + 1) / (b + 1))) for a, b in sums.values())
    assert np.allclose(sorted(values), want)
    assert min(want) < 0 < max(want) or len(want) < 3  # signed: both sides occur


def test_health_rates_use_busy_seconds_and_replays_have_no_event_lag(replay, variables):
    target = next(t for t in TARGETS if t.key == ("ifd-health", "Records/s", "A"))
    sql = expand(target.sql, replay.health_range_s, variables["ifd-health"])
    got = replay.store.query_arrow(sql).to_pydict()
    rows = replay.store.query_arrow(
        "SELECT toUnixTimestamp64Milli(processed_at) AS t, records FROM ifd.ingest_batches FINAL "
        "WHERE inserted_at >= toDateTime({lo:Int64}) AND inserted_at <= toDateTime({hi:Int64})",
        {"lo": replay.health_range_s[0], "hi": replay.health_range_s[1]}).to_pydict()
    buckets: dict[int, list[tuple[int, int]]] = {}
    for t, n in zip(rows["t"], rows["records"], strict=True):
        buckets.setdefault(t // 1000 // INTERVAL_S * INTERVAL_S, []).append((t, n))
    want = [sum(n for _, n in b) / max(1.0, (max(t for t, _ in b) - min(t for t, _ in b)) / 1000)
            for _, b in sorted(buckets.items())]
    assert np.allclose(got["records_per_s"], want)
    lag = next(t for t in TARGETS if t.panel.startswith("Lag:"))
    lags = replay.store.query_arrow(expand(lag.sql, replay.health_range_s,
                                           variables["ifd-health"])).to_pydict()
    assert all(v is None for v in lags["event_lag_s"])  # only replays in this store
    assert all(v is not None and 0 <= v < 3600 for v in lags["write_lag_s"])

"""Worker threads (``-w N``) and two processes (``-i 0/1 -a``) store exactly what one worker stores.

Each run is ``python -m bytewax.run flows.ifd`` in subprocesses (bytewax runs ``-w`` workers on its
own threads), bounded by a timeout, over the bundled multi-day sample (6 days, 12 files). Both
processes of the cluster share one embedded chdb directory, taking turns through its file lock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flows.ifd import bytewax_workers, cluster_processes
from samples import ensure_sample
from sinks.clickhouse import ChdbStore

ROOT = Path(__file__).resolve().parents[1]

METRICS_SQL = """
SELECT contract_key, toUnixTimestamp(window_start) AS ws, bid_volume, ask_volume, unknown_volume,
       total_volume, total_trades, round(vwap, 6) AS vwap, max_trade_size
FROM ifd.pressure_metrics ORDER BY contract_key, ws
"""
SIGNALS_SQL = """
SELECT contract_key, toUnixTimestamp(window_start) AS ws, toString(direction) AS direction,
       toString(signal_class) AS cls, round(confidence, 9) AS confidence, total_volume, reason
FROM ifd.ifd_signals FINAL ORDER BY contract_key, ws, cls
"""


def _env(data_dir: Path, source: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IFD_", "BYTEWAX_"))}
    env.update(IFD_DATA_DIR=str(data_dir), IFD_SOURCE=source, IFD_PROGRESS_INTERVAL_S="0",
               IFD_ALERT_JSONL_PATH="")
    return env


def _run(data_dir: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bytewax.run", "flows.ifd", *args], cwd=ROOT,
                          env=_env(data_dir, source), capture_output=True, text=True, timeout=300,
                          check=False)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _run_cluster(data_dir: Path, source: str, processes: int) -> list[tuple[int, str, str]]:
    """Run ``processes`` bytewax processes of one cluster on 127.0.0.1; (rc, stdout, stderr) each."""
    addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(processes))
    procs = [
        subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.ifd", "-i", str(i), "-a", addresses],
                         cwd=ROOT, env=_env(data_dir, source), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(processes)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def _stored(data_dir: Path) -> tuple[list[dict], list[dict]]:
    store = ChdbStore(data_dir / "chdb")
    try:
        return store.query_arrow(METRICS_SQL).to_pylist(), store.query_arrow(SIGNALS_SQL).to_pylist()
    finally:
        store.close()


@pytest.fixture(scope="module")
def sample_source(tmp_path_factory) -> str:
    files = ensure_sample(tmp_path_factory.mktemp("sample"))
    return ",".join(str(f) for f in files)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, sample_source):
    data_dir = tmp_path_factory.mktemp("w1")
    proc = _run(data_dir, sample_source)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return _stored(data_dir)


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_threads_store_exactly_what_one_worker_stores(tmp_path, sample_source, one_worker, workers):
    proc = _run(tmp_path, sample_source, "-w", str(workers))
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics, signals = _stored(tmp_path)
    expected_metrics, expected_signals = one_worker
    assert len(expected_metrics) > 10_000 and len(expected_signals) > 10  # a real workload
    assert metrics == expected_metrics
    assert signals == expected_signals


def test_two_processes_sharing_embedded_chdb_store_exactly_what_one_worker_stores(
        tmp_path, sample_source, one_worker):
    results = _run_cluster(tmp_path, sample_source, 2)
    for rc, _out, err in results:
        assert rc == 0, err[-4000:]
    summaries = [out for _rc, out, _err in results if "windows written" in out]
    assert len(summaries) == 1  # one process holds the sink partition and prints the run report
    metrics, signals = _stored(tmp_path)
    expected_metrics, expected_signals = one_worker
    assert len(expected_metrics) > 10_000 and len(expected_signals) > 10
    assert metrics == expected_metrics
    assert signals == expected_signals


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], None, 1),
    (["flows.ifd", "-w", "2"], None, 1),
    (["flows.ifd", "-i", "0", "-a", "h1:2101;h2:2101"], None, 2),
    (["flows.ifd", "--addresses=h1:1;h2:1;h3:1"], None, 3),
    ([], "h1:2101;h2:2101", 2),
])
def test_cluster_size_comes_from_bytewax_addresses(argv, env, expected):
    assert cluster_processes(argv, env) == expected


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], None, 1),
    (["flows.ifd", "-w", "3"], None, 3),
    (["flows.ifd", "--workers-per-process=2", "-i", "0", "-a", "h1:2101;h2:2101"], None, 4),
    (["flows.ifd", "-w", "2"], "h1:1;h2:1;h3:1", 6),
])
def test_default_window_shards_are_one_per_worker_of_the_run(argv, env, expected):
    assert bytewax_workers(argv, env) == expected

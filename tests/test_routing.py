"""``flows.routing`` predicts where bytewax puts a stateful key and a one-partition sink.

A probe dataflow runs under ``python -m bytewax.run -w N`` (worker threads): every key goes
through a ``stateful_map`` into a dynamic sink, which records the index of the worker it runs on;
a one-partition fixed sink records the thread its partition runs on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.routing import SINK_WORKER, key_on_worker, worker_of

ROOT = Path(__file__).resolve().parents[1]
KEYS = [f"s{i:03d}" for i in range(6)] + ["ifd", "clickhouse", "alerts", "s000~1", "ünï"]

PROBE = '''
import json, sys, threading
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

OUT = {out!r}
KEYS = {keys!r}
THREADS = {{}}

class Worker(StatelessSinkPartition):
    def __init__(self, index):
        self.index = index
        THREADS[threading.get_ident()] = index
    def write_batch(self, items):
        with open(OUT, "a") as f:
            for key in items:
                f.write(json.dumps(["key", key, self.index]) + "\\n")

class Workers(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return Worker(worker_index)

class Part(StatefulSinkPartition):
    def write_batch(self, items):
        with open(OUT, "a") as f:
            f.write(json.dumps(["part", "clickhouse", threading.get_ident()]) + "\\n")
    def snapshot(self):
        return None

class Parts(FixedPartitionedSink):
    def list_parts(self):
        return ["clickhouse"]
    def build_part(self, step_id, for_part, resume_state):
        return Part()

def threads():
    with open(OUT, "a") as f:
        f.write(json.dumps(["threads", THREADS]) + "\\n")

flow = Dataflow("probe")
keys = op.key_on("k", op.input("in", flow, TestingSource(KEYS)), lambda k: k)
seen = op.stateful_map("m", keys, lambda s, k: (None, k))
op.output("workers", op.map("v", seen, lambda kv: kv[1]), Workers())
op.output("part", keys, Parts())
import atexit
atexit.register(threads)
'''


def _routes(tmp_path: Path, workers: int) -> tuple[dict[str, int], int]:
    out = tmp_path / f"routes-{workers}.jsonl"
    module = tmp_path / f"probe_{workers}.py"
    module.write_text(PROBE.format(out=str(out), keys=KEYS))
    proc = subprocess.run([sys.executable, "-m", "bytewax.run", f"{module.stem}:flow", "-w", str(workers)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = {row[1]: row[2] for row in rows if row[0] == "key"}
    threads = {int(t): i for row in rows if row[0] == "threads" for t, i in row[1].items()}
    part_threads = {row[2] for row in rows if row[0] == "part"}
    assert len(part_threads) == 1
    return keys, threads[part_threads.pop()]


@pytest.mark.parametrize("workers", [2, 3])
def test_predicted_workers_are_where_bytewax_routes_keys_and_the_sink_partition(tmp_path, workers):
    keys, sink_worker = _routes(tmp_path, workers)
    assert keys == {key: worker_of(key, workers) for key in KEYS}
    assert len(set(keys.values())) == workers  # the probe keys really spread
    # partitions are not hashed: bytewax gives each to the least-loaded worker listing it, so a
    # sink's single partition, listed by every worker, lives on worker 0 (flows.routing.SINK_WORKER)
    assert sink_worker == SINK_WORKER


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_a_key_can_be_placed_on_every_worker(workers):
    for worker in range(workers):
        key = key_on_worker("s000", worker, workers)
        assert worker_of(key, workers) == worker and key.startswith("s000")
    with pytest.raises(ValueError, match="not one of"):
        key_on_worker("s000", workers, workers)

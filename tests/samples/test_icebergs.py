"""samples.icebergs: the labelled MBO iceberg tape is a consistent book and its labels are true.

Expected values are recomputed from the written DBN records, not taken from the generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import databento as db
import numpy as np
import pytest

from samples.icebergs import generate_iceberg_tape


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory):
    out = generate_iceberg_tape(tmp_path_factory.mktemp("ice"), seed=9, events=20_000, icebergs=12)
    return out, db.DBNStore.from_file(out.mbo_path).to_ndarray(), [
        json.loads(line) for line in out.labels_path.read_text().splitlines()]


def test_labels_match_the_records(tape):
    _out, rec, labels = tape
    assert len(labels) == 12 and {x["kind"] for x in labels} == {"native", "synthetic"}
    fills = rec[rec["action"] == b"F"]
    for x in labels:
        price = round(x["price"] * 1e9)
        if x["kind"] == "native":  # every fill of its one order id, at its price
            own = fills[fills["order_id"] == x["order_id"]]
            assert int(own["size"].sum()) == x["total"] and set(own["price"].tolist()) == {price}
            shown = rec[(rec["order_id"] == x["order_id"]) & np.isin(rec["action"], [b"A", b"M"])]
            assert shown["size"].max() <= x["display"]
        else:  # tranches: adds of the display size at that price and side
            adds = rec[(rec["action"] == b"A") & (rec["price"] == price)
                       & (rec["side"] == x["side"].encode()) & (rec["size"] == x["display"])
                       & (rec["ts_event"] >= x["first_ts"]) & (rec["ts_event"] <= x["last_ts"])]
            assert len(adds) >= 1


def test_every_event_ends_with_f_last_and_time_never_goes_back(tape):
    _out, rec, _labels = tape
    ts = rec["ts_event"].astype(np.int64)
    assert np.all(np.diff(ts) >= 0) and rec["flags"][-1] == 128
    trades = rec[rec["action"] == b"T"]
    assert set(np.unique(trades["side"]).tolist()) <= {b"A", b"B"}


def test_same_seed_same_bytes(tmp_path: Path):
    a = generate_iceberg_tape(tmp_path / "a", seed=3, events=3_000, icebergs=4)
    b = generate_iceberg_tape(tmp_path / "b", seed=3, events=3_000, icebergs=4)
    assert a.mbo_path.read_bytes() == b.mbo_path.read_bytes()
    with pytest.raises(ValueError, match="events"):
        generate_iceberg_tape(tmp_path, events=0)

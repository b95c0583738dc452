"""Sweeps (same-side prints across strikes of one expiry within ~1 s) and block prints.

Expected values: a per-print statement of the rule in plain Python (dicts per aligned cell)
for random tapes, and hand-built tapes for the cases a trader cares about.
"""

from __future__ import annotations

import random

import databento_dbn as dbn
import numpy as np
import pytest

from connectors.dbn import RTYPE_TRADES
from flows.sweeps import TapeRules, sweep_prints
from tests.dbnfiles import NS, PX, T0, call_definition, records, write_dbn
from tests.flowrun import contract_rows, run_flow

DAY = 86_400 * NS
MS = 1_000_000


def _reference(prints, rules: TapeRules) -> list[bool]:
    """prints: (ts, side, size, chain, type, strike, eligible) → sweep flag per print."""
    out = [False] * len(prints)
    for offset in (0, rules.interval_ns // 2):
        cells: dict[tuple, list[int]] = {}
        for i, (ts, side, _size, chain, kind, _strike, ok) in enumerate(prints):
            if ok and side != 0 and chain >= 0 and kind >= 0:
                cells.setdefault((chain, kind, side, (ts + offset) // rules.interval_ns), []).append(i)
        for members in cells.values():
            strikes = {prints[i][5] for i in members}
            volume = sum(prints[i][2] for i in members)
            if len(strikes) >= rules.min_strikes and volume >= rules.min_volume:
                for i in members:
                    out[i] = True
    return out


def test_sweep_prints_equal_a_per_cell_statement_on_random_tapes():
    rng = random.Random(3)
    rules = TapeRules(interval_ns=1_000 * MS, min_strikes=3, min_volume=20)
    prints = []
    t = T0
    for _ in range(3000):
        t += rng.choice([0, 1 * MS, 10 * MS, 40 * MS, 2_000 * MS])
        prints.append((t, rng.choice([1, -1, 1, -1, 0]), rng.randint(1, 30), rng.choice([0, 0, 1, -1]),
                       rng.choice([0, 1]), rng.randint(0, 5) * 50 * NS, rng.random() > 0.1))
    cols = list(zip(*prints, strict=True))
    got = sweep_prints(np.array(cols[0], dtype=np.int64), np.array(cols[1], dtype=np.int8),
                       np.array(cols[2], dtype=np.int64), np.array(cols[3], dtype=np.int64),
                       np.array(cols[4], dtype=np.int8), np.array(cols[5], dtype=np.int64),
                       np.array(cols[6], dtype=bool), rules)
    expected = _reference(prints, rules)
    assert got.tolist() == expected
    assert 100 < sum(expected) < len(prints) - 100


RULES = TapeRules()


def _tape(rows, rules=RULES):
    ts, side, size, strike = (np.array(x) for x in zip(*rows, strict=True))
    n = len(ts)
    return sweep_prints(ts.astype(np.int64), side.astype(np.int8), size.astype(np.int64),
                        np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int8),
                        strike.astype(np.int64), np.ones(n, dtype=bool), rules).tolist()


def test_a_burst_across_strikes_is_a_sweep_wherever_it_falls_on_the_second_grid():
    # four strikes lifted within 300 ms, straddling a whole second
    t = T0 + 900 * MS
    burst = [(t + i * 100 * MS, 1, 10, k) for i, k in enumerate((100, 105, 110, 115))]
    assert _tape(burst) == [True] * 4


def test_the_same_strikes_minutes_apart_or_on_both_sides_are_no_sweep():
    apart = [(T0 + i * 20_000 * MS, 1, 10, k) for i, k in enumerate((100, 105, 110, 115))]
    assert _tape(apart) == [False] * 4
    mixed = [(T0 + i * 10 * MS, s, 10, k) for i, (s, k) in enumerate(((1, 100), (-1, 105), (1, 110),
                                                                      (-1, 115)))]
    assert _tape(mixed) == [False] * 4
    tiny = [(T0 + i * 10 * MS, 1, 2, k) for i, k in enumerate((100, 105, 110))]  # 6 lots < 20
    assert _tape(tiny) == [False] * 3


# -- end to end: tags in the window parts -------------------------------------------------------

EXP1, EXP2 = T0 + 10 * DAY, T0 + 17 * DAY


@pytest.mark.parametrize("batch_records", [6, 100_000])  # a sweep is found inside one batch
def test_flow_tags_sweep_and_block_prints_per_contract_window(tmp_path, batch_records):
    strikes = (20_000, 20_100, 20_200, 20_300)
    defs = [call_definition(100 + i, k, EXP1) for i, k in enumerate(strikes)]
    defs += [call_definition(200 + i, k, EXP2) for i, k in enumerate(strikes)]
    definitions = write_dbn(tmp_path / "d.definition.dbn.zst", defs, schema=dbn.Schema.DEFINITION,
                            start=T0, end=T0 + DAY)
    rows = [(T0 + 10 * NS + i * 150 * MS, 100 + i, 12, "B") for i in range(4)]   # sweep, expiry 1
    rows += [(T0 + 20 * NS + i * 40 * NS, 200 + i, 12, "B") for i in range(4)]   # expiry 2, minutes
    rows += [(T0 + 250 * NS, 101, 80, "A"), (T0 + 260 * NS, 102, 49, "A")]       # a block, a 49-lot
    rows.sort()
    trades = np.concatenate([records(RTYPE_TRADES, [t], [i], [PX], [s], side) for t, i, s, side in rows])
    tape = write_dbn(tmp_path / "t.trades.dbn.zst", [trades], start=T0, end=T0 + DAY)
    items = run_flow(tmp_path, [definitions, tape], batch_records=batch_records,
                     scoring={"block_min_lots": 50})
    got: dict[int, tuple[int, int, int]] = {}
    for p in contract_rows(items):
        sweep, volume, trades_ = got.get(p.instrument_id, (0, 0, 0))
        got[p.instrument_id] = (sweep + p.sweep_volume, volume + p.block_volume,
                                trades_ + p.block_trades)
    assert {i: got[i][0] for i in got} == {100: 12, 101: 12, 102: 12, 103: 12,
                                           200: 0, 201: 0, 202: 0, 203: 0}
    assert {i: got[i][1:] for i in got if got[i][1:] != (0, 0)} == {101: (80, 1)}

"""Spreads from definitions: DBN v3 leg records, leg prints attributed from the spread's aggressor.

A user-defined vertical (instrument class ``T``, legs: buy the 20000 call, sell the 20100 call)
trades as one spread print with an aggressor and one print per leg with side ``N`` at the same
``ts_event`` (CME MDP 3.0 Trade Summary). Expected numbers are written from that rule by hand.
"""

from __future__ import annotations

import datetime as dt
import random

import databento_dbn as dbn
import numpy as np
import pytest

from connectors.dbn import RTYPE_MBP1, read_definitions
from flows.spreads import attribute_spread_legs
from models.records import SpreadLeg
from tests.dbnfiles import NS, PX, T0, records, write_dbn
from tests.flowrun import contract_rows, run_flow

DAY = 86_400 * NS
EXP = T0 + 10 * DAY
K1, K2, UDS = 101, 102, 900


def _definition(iid: int, symbol: str, cls: str, *, strike: int | None = None, leg: tuple | None = None,
                leg_count: int = 0) -> bytes:
    exp = dt.datetime.fromtimestamp(EXP // NS, dt.UTC)
    fields: dict = dict(
        publisher_id=1, ts_event=T0, ts_recv=T0, instrument_id=iid, raw_symbol=symbol,
        raw_instrument_id=iid, group="NQ", asset="QN", currency="USD", exchange="XCME",
        security_type="OOF", cfi="OCAFPS" if cls == "C" else "OMXXXX", underlying="NQZ6",
        instrument_class=dbn.InstrumentClass(cls), expiration=EXP,
        security_update_action=dbn.SecurityUpdateAction.ADD, display_factor=NS,
        unit_of_measure="IPNT", unit_of_measure_qty=20 * NS, min_price_increment=NS // 4,
        maturity_year=exp.year, maturity_month=exp.month, maturity_day=exp.day,
    )
    if strike is not None:
        fields.update(strike_price=strike, strike_price_currency="USD")
    if leg is not None:
        index, leg_iid, side, ratio = leg
        fields.update(leg_count=leg_count, leg_index=index, leg_instrument_id=leg_iid,
                      leg_side=dbn.Side(side), leg_ratio_qty_numerator=ratio,
                      leg_ratio_qty_denominator=1, leg_instrument_class=dbn.InstrumentClass.CALL)
    return bytes(dbn.InstrumentDefMsg(**fields))


def _definitions(tmp_path):
    blocks = [
        _definition(K1, "QNZ6 C20000", "C", strike=20_000 * NS),
        _definition(K2, "QNZ6 C20100", "C", strike=20_100 * NS),
        _definition(UDS, "UD:1V: VT 1205", "T", leg=(0, K1, "B", 1), leg_count=2),
        _definition(UDS, "UD:1V: VT 1205", "T", leg=(1, K2, "A", 1), leg_count=2),
    ]
    return write_dbn(tmp_path / "d.definition.dbn.zst", blocks, schema=dbn.Schema.DEFINITION,
                     start=T0, end=T0 + DAY)


def test_leg_records_of_a_spread_become_one_definition_with_its_legs(tmp_path):
    defs = read_definitions(_definitions(tmp_path))
    by_id = {d.instrument_id: d for d in defs}
    assert sorted(by_id) == [K1, K2, UDS] and len(defs) == 3
    assert by_id[UDS].legs == (SpreadLeg(0, K1, 1, 1), SpreadLeg(1, K2, -1, 1))
    assert by_id[UDS].instrument_class == "T" and by_id[K1].legs == ()
    assert by_id[K1].multiplier == 20.0  # unit_of_measure IPNT, unit_of_measure_qty 20 (1e-9)


@pytest.mark.parametrize("batch_records", [1, 4, 5, 100_000])
def test_vertical_legs_take_their_side_from_the_spread_never_from_outright_quotes(
        tmp_path, batch_records):
    t1, t2, t3 = T0 + 10 * NS, T0 + 20 * NS, T0 + 30 * NS
    bid, ask = 100 * PX, 101 * PX
    rows = [  # (ts, iid, price, size, side); BBO of the outrights: 100 / 101 points
        (t1, UDS, 5 * PX, 50, "B"),         # vertical bought: 50 lots
        (t1, K1, 100 * PX, 50, "N"),        # buy leg printed AT THE BID (quote rule: sell)
        (t1, K2, 96 * PX, 50, "N"),         # sell leg printed below the bid (quote rule: sell)
        (t2, UDS, 5 * PX, 20, "A"),         # vertical sold: 20 lots
        (t2, K1, 101 * PX, 20, "N"),        # its buy leg is now sold, printed at the ask
        (t2, K2, 96 * PX, 20, "N"),
        (t3, K1, 101 * PX, 5, "N"),         # an outright at the ask: quote rule, buy
    ]
    recs = np.concatenate([
        records(RTYPE_MBP1, [ts], [iid], [price], [size], side, bid=bid, ask=ask)
        for ts, iid, price, size, side in rows])
    tbbo = write_dbn(tmp_path / "t.tbbo.dbn.zst", [recs], schema=dbn.Schema.TBBO,
                     start=T0, end=T0 + DAY)
    items = run_flow(tmp_path, [_definitions(tmp_path), tbbo], batch_records=batch_records)
    got: dict[int, dict[str, int]] = {}
    for p in contract_rows(items):
        row = got.setdefault(p.instrument_id, dict(bid=0, ask=0, unknown=0, spread=0))
        row["bid"] += p.bid_volume
        row["ask"] += p.ask_volume
        row["unknown"] += p.unknown_volume
        row["spread"] += p.spread_volume
    if batch_records == 1:
        # one record per batch: a leg print never shares a batch with its spread print, so the
        # legs fall back to the outright rules; the spread's own row is still spread volume.
        # Larger batches end at a change of ts_event (the reader keeps a match event whole).
        assert got[UDS] == dict(bid=20, ask=50, unknown=0, spread=70)
        return
    assert got[UDS] == dict(bid=20, ask=50, unknown=0, spread=70)
    assert got[K1] == dict(bid=20, ask=55, unknown=0, spread=70)
    assert got[K2] == dict(bid=50, ask=20, unknown=0, spread=70)


def _reference(trades, legs_by_spread):
    """Per-trade statement of the rule: legs of a spread print at the same ts, side N."""
    out = []
    for ts, iid, side in trades:
        if iid in legs_by_spread:
            out.append((True, False, 0))
            continue
        found = None
        if side == 0:
            for ts2, iid2, side2 in trades:  # the first spread print in stream order
                if ts2 == ts and iid2 in legs_by_spread:
                    leg = next((lg for lg in legs_by_spread[iid2] if lg.instrument_id == iid), None)
                    if leg is not None:
                        found = side2 * leg.side
                        break
        out.append((False, found is not None, found or 0))
    return out


def test_attribution_equals_a_per_trade_statement_on_random_batches():
    rng = random.Random(11)
    legs_by_spread = {
        900: (SpreadLeg(0, 1, 1, 1), SpreadLeg(1, 2, -1, 1)),
        901: (SpreadLeg(0, 2, 1, 1), SpreadLeg(1, 3, 1, 2)),  # a ratio spread, both legs bought
        902: (SpreadLeg(0, 4, -1, 1), SpreadLeg(1, 1, 1, 1)),
    }
    trades = []
    for _ in range(600):
        ts = T0 + rng.randint(0, 150) * NS
        if rng.random() < 0.3:
            spread = rng.choice(list(legs_by_spread))
            trades.append((ts, spread, rng.choice([1, -1, 0])))
            for leg in legs_by_spread[spread]:
                if rng.random() < 0.9:
                    trades.append((ts, leg.instrument_id, 0))
        else:
            trades.append((ts, rng.choice([1, 2, 3, 4, 5]), rng.choice([1, -1, 0, 0])))
    ts = np.array([t[0] for t in trades], dtype=np.int64)
    iid = np.array([t[1] for t in trades], dtype=np.uint32)
    side = np.array([t[2] for t in trades], dtype=np.int8)
    is_spread, is_leg, leg_side = attribute_spread_legs(ts, iid, side, legs_by_spread)
    expected = _reference(trades, legs_by_spread)
    assert list(zip(is_spread.tolist(), is_leg.tolist(), leg_side.tolist(), strict=True)) == expected
    assert 50 < is_leg.sum() < len(trades) and (leg_side[is_leg] == 0).any()

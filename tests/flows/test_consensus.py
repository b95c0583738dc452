"""flows.consensus: scorers from settings, their scores and the weighted consensus on signals."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from flows.consensus import EvidenceBook, L3Evidence, load_scorers, with_consensus
from models.errors import ConfigError
from models.records import AbsorptionRows, IcebergRows
from models.signals import Direction, Signal, SignalClass

T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())


def _signal(confidence: float = 0.8, volume: int = 200) -> Signal:
    return Signal(
        window_start=T0, window_end=T0, contract_key="F|ESH4", instrument_id=7, symbol="ESH4",
        underlying="ES", expiration=None, strike=None, option_type="F", direction=Direction.BUY,
        signal_class=SignalClass.STRONG, confidence=confidence, bid_volume=10,
        ask_volume=volume - 10, total_volume=volume, total_trades=20, avg_trade_size=10.0,
        volume_z=6.0, dominance=0.9, size_ratio=2.0, sample_factor=1.0, mm_score=0.0,
        baseline_scope="contract", baseline_windows=20, baseline_volume=50.0,
        baseline_avg_size=4.0)


def constant_scorer(signal: Signal, evidence: L3Evidence) -> float:
    """A user scorer given as a plain function (loaded by dotted path in the test)."""
    return 0.25


class Broken:
    name = "broken"

    def score(self, signal: Signal, evidence: L3Evidence) -> float:
        msg = "no data"
        raise RuntimeError(msg)


def test_consensus_is_the_weighted_mean_of_the_scores():
    scorers = load_scorers("ifd:1, l3:0.5, tests.flows.test_consensus:constant_scorer:0.5")
    out = with_consensus(_signal(0.8, 200), scorers, L3Evidence(iceberg_volume=60,
                                                                absorbed_volume=40))
    scores = json.loads(out.scores)
    assert scores == {"ifd": 0.8, "l3": 0.5, "constant_scorer": 0.25}  # l3 = (60 + 40) / 200
    assert out.consensus == pytest.approx((0.8 * 1 + 0.5 * 0.5 + 0.25 * 0.5) / 2.0)
    assert out.signal_class is SignalClass.STRONG and out.confidence == 0.8  # class unchanged


def test_l3_abstains_without_evidence():
    out = with_consensus(_signal(0.9), load_scorers("ifd:1,l3:0.5"), L3Evidence())
    assert json.loads(out.scores) == {"ifd": 0.9, "l3": None} and out.consensus == 0.9


def test_a_failing_user_scorer_scores_zero_and_names_its_error():
    scorers = load_scorers("ifd:1,tests.flows.test_consensus:Broken:1")
    scores = json.loads(with_consensus(_signal(0.6), scorers, L3Evidence()).scores)
    assert scores["broken"] == 0.0 and scores["broken_error"] == "RuntimeError: no data"


@pytest.mark.parametrize("spec", ["", "ifd", "ifd:-1", "ifd:0", "nosuch.module:X:1", "ifd:x"])
def test_bad_scorer_lists_are_config_errors(spec):
    with pytest.raises(ConfigError, match="IFD_SCORING_SCORERS"):
        load_scorers(spec)


def test_evidence_book_counts_iceberg_growth_once_and_absorption_by_first_fill():
    book = EvidenceBook()
    s = 10**9

    def icebergs(executed: int, last_ts_s: int) -> IcebergRows:
        one = np.ones(1)
        return IcebergRows(source="x", seq=0, kind=np.array(["native"], dtype=object),
                           instrument_id=np.array([7], dtype=np.uint32),
                           contract_key=np.array(["F|ESH4"], dtype=object),
                           side=np.array(["B"], dtype=object), price=np.array([5 * s]),
                           order_id=np.array([1], dtype=np.uint64), first_ts=np.array([T0_S * s]),
                           last_ts=np.array([last_ts_s * s]), refills=one.astype(int),
                           peak_size=one.astype(int), executed=np.array([executed]),
                           estimated_total=np.array([executed]),
                           state=np.array(["active"], dtype=object))

    book.add(icebergs(30, T0_S + 10))
    book.add(icebergs(50, T0_S + 20))  # the same iceberg grew by 20 in the same window
    book.add(icebergs(80, T0_S + 310))  # and by 30 in the next window
    book.add(AbsorptionRows(source="x", seq=0, contract_key=np.array(["F|ESH4"], dtype=object),
                            instrument_id=np.array([7], dtype=np.uint32),
                            side=np.array(["A"], dtype=object), price=np.array([6 * s]),
                            absorbed=np.array([70]), start_size=np.array([9]),
                            fills=np.array([12]), first_ts=np.array([(T0_S + 299) * s]),
                            last_ts=np.array([(T0_S + 330) * s]),
                            outcome=np.array(["held"], dtype=object),
                            window_start_ns=np.array([T0_S * s])))
    assert book.evidence("F|ESH4", T0_S) == L3Evidence(50.0, 70.0)
    assert book.evidence("F|ESH4", T0_S + 300) == L3Evidence(30.0, 0.0)
    assert book.evidence("F|OTHER", T0_S) == L3Evidence()

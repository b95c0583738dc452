"""Pure parts of the live feed: budget meter, sessions, key handling (de-duplication: test_live_resume)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.live import BudgetMeter, MarketSessions
from models.errors import ConfigError
from models.settings import LiveSettings, load_section, masked


def test_budget_meter_prices_bytes_and_hours_and_stops_at_the_fraction():
    meter = BudgetMeter(daily_budget_usd=10.0, stop_fraction=0.8, cost_per_gb_usd=2.0,
                        cost_per_hour_usd=1.0)
    meter.roll(86_400 * 100 + 5)
    meter.bytes = 2_000_000_000  # $4
    meter.connected_s = 3 * 3600  # $3
    assert meter.cost_usd() == pytest.approx(7.0)
    assert not meter.exhausted()
    meter.bytes += 500_000_000  # +$1 → $8 = 80 %
    assert meter.exhausted()
    meter.roll(86_400 * 101)  # next UTC day
    assert meter.cost_usd() == 0.0 and not meter.exhausted()


def test_sessions_follow_cme_globex_and_the_nyse_rth_preset():
    def ts(text):
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    globex, rth = MarketSessions("globex"), MarketSessions("rth")
    assert globex.is_open(ts("2026-11-20T15:00:00"))  # Friday, US morning
    assert not globex.is_open(ts("2026-11-21T15:00:00"))  # Saturday
    # reopens Sunday 17:00 Chicago = 23:00 UTC
    assert globex.next_open_s(ts("2026-11-21T15:00:00")) == ts("2026-11-22T23:00:00")
    assert rth.is_open(ts("2026-11-20T15:00:00"))  # 10:00 ET
    assert not rth.is_open(ts("2026-11-20T22:00:00"))  # 17:00 ET
    assert not rth.is_open(ts("2026-11-26T15:00:00"))  # Thanksgiving
    assert MarketSessions("always").is_open(ts("2026-11-21T15:00:00"))


def test_missing_api_key_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    monkeypatch.chdir("/")  # no .env here
    with pytest.raises(ConfigError, match="DATABENTO_API_KEY is not set: export it or put"):
        load_section(LiveSettings).key()


def test_api_key_never_appears_in_settings_repr_or_masked(monkeypatch):
    monkeypatch.setenv("DATABENTO_API_KEY", "db-test_SECRET_key_12345")
    s = load_section(LiveSettings)
    assert "test_SECRET" not in repr(s) and "test_SECRET" not in str(masked(s))
    assert s.key() == "db-test_SECRET_key_12345"


def test_usage_minute_shows_the_worst_mode_and_an_empty_minute_still_gets_a_row():
    from connectors.live_budget import UsageMeter
    from models.batch import DecodedChunk

    meter = UsageMeter("live-x")
    t0 = 1_800_000_000 // 60 * 60
    meter.note_mode("live")
    meter.account(t0 + 1, 10, 100, DecodedChunk(start_record=0, n_records=10, end_offset=100),
                  cost_usd=0.0, reconnects=0, last_error="")
    meter.note_mode("historical")
    meter.note_mode("live")
    rows = meter.take(t0 + 61, cost_usd=0.0, reconnects=1, last_error="")
    assert [(r.minute_s, r.mode, r.records) for r in rows] == [(t0, "historical", 10)]
    meter.note_mode("down")  # no batch in this minute: the outage still shows
    assert meter.take(t0 + 62, cost_usd=0.0, reconnects=1, last_error="") == []
    rows = meter.take(t0 + 121, cost_usd=0.0, reconnects=1, last_error="")
    assert [(r.minute_s, r.mode, r.records) for r in rows] == [(t0 + 60, "down", 0)]

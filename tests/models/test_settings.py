from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.errors import ConfigError
from models.redact import mask_url
from models.settings import LiveSettings, Settings, load_section, load_settings, masked


def test_invalid_trade_schema_names_variable_and_accepted_values(monkeypatch):
    monkeypatch.setenv("IFD_TRADE_SCHEMA", "bbo-1s")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "IFD_TRADE_SCHEMA='bbo-1s'" in str(err.value)
    assert "'mbo'" in str(err.value) and "'trades'" in str(err.value)


def test_window_length_must_divide_a_day(monkeypatch):
    monkeypatch.setenv("IFD_WINDOW_LENGTH_S", "7")
    with pytest.raises(ConfigError, match="IFD_WINDOW_LENGTH_S=.*divide 86400"):
        load_settings()


def test_source_list_and_defaults(monkeypatch):
    monkeypatch.setenv("IFD_SOURCE", " a.dbn , b/*.dbn.zst ,")
    s = load_settings()
    assert s.source_patterns() == ["a.dbn", "b/*.dbn.zst"]
    assert s.window_length_s == 300 and s.embedded
    assert str(s.effective_chdb_path) == "data/chdb"


def test_clickhouse_password_is_masked(monkeypatch):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "http://ifd:s3cret-pw@db.internal:8123/ifd")
    s = load_settings()
    shown = repr(masked(s)) + repr(s)
    assert "s3cret-pw" not in shown
    assert "http://ifd:***@db.internal:8123/ifd" in shown
    assert not s.embedded


@pytest.mark.parametrize("value", [" , ", ",", " ", ",,, ,"])
def test_source_naming_no_file_is_an_error_not_the_sample(monkeypatch, value):
    monkeypatch.setenv("IFD_SOURCE", value)
    with pytest.raises(ConfigError, match="IFD_SOURCE.*names no file"):
        load_settings()


def test_empty_source_means_unset(monkeypatch):
    monkeypatch.setenv("IFD_SOURCE", "")
    assert load_settings().source_patterns() == []


@pytest.mark.parametrize(("url", "problem"), [
    ("garbage", "no scheme"),
    ("user:s3cretpw@host", "no scheme"),
    ("http://", "no host"),
    ("ftp://u:s3cretpw@h", "not http or https"),
    ("http://u:s3cretpw@h:port/ifd", "port"),
    ("s3cretpw", "no scheme"),                           # the password alone
    ("ifd:s3cretpw", "12 characters, not shown"),        # user:password, scheme and host forgotten
    ("http://ifd:s3cretpw@:8123/ifd", "no host"),
    ("http://ifd:s3cretpw@db:0/ifd", "port"),
    ("http://ifd:s3cretpw@db:65536/ifd", "port"),
    ("http://ifd:s3cretpw", "port"),                     # reads as host 'ifd', port 's3cretpw'
    ("http://ifd:s3cret/pw@db:8123/ifd", "percent-encoded"),
    ("clickhouse://ifd:s3cretpw@db:9000/ifd", "not http or https"),
])
def test_bad_clickhouse_url_names_the_variable_and_never_the_password(monkeypatch, url, problem):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", url)
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "IFD_CLICKHOUSE_URL" in text and problem in text
    assert "s3cret" not in text and "http(s)://user:password@host:8123/database" in text
    assert err.value.__context__ is None  # no chained ValidationError holding the raw value


def test_valid_clickhouse_url_is_kept_and_masked(monkeypatch):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "https://ifd:s3cretpw@ch.example:8443/ifd")
    s = load_settings()
    assert s.clickhouse_url.get_secret_value() == "https://ifd:s3cretpw@ch.example:8443/ifd"
    assert "s3cretpw" not in str(masked(s)) and "s3cretpw" not in repr(s)


def test_source_error_says_what_was_given_and_what_is_expected(monkeypatch):
    monkeypatch.setenv("IFD_SOURCE", " , ")
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "IFD_SOURCE=' , '" in text and "comma-separated DBN paths or globs" in text


def test_no_scheme_url_error_shows_a_masked_shape(monkeypatch):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "ifd:s3cretpw@db.internal:8123/ifd")
    with pytest.raises(ConfigError, match=r"ifd:\*\*\*@db\.internal:8123/ifd"):
        load_settings()


def test_other_errors_do_not_print_the_url_of_a_valid_setting(monkeypatch):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "http://ifd:s3cretpw@db:8123/ifd")
    monkeypatch.setenv("IFD_SCORING_Z_HIGH", "1")  # model-level check: its input is every setting
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "IFD_SCORING_Z_HIGH must exceed" in str(err.value) and "s3cretpw" not in str(err.value)


def test_raw_validation_error_hides_the_input():
    with pytest.raises(ValidationError) as err:
        Settings(clickhouse_url="http://ifd:s3cretpw@db:port/ifd")
    assert "s3cretpw" not in str(err.value) and "s3cretpw" not in repr(err.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://ifd:pw@db:8123/ifd", "http://ifd:***@db:8123/ifd"),
    ("ifd:pw@db:8123/ifd", "ifd:***@db:8123/ifd"),
    ("ifd:pw", "ifd:***"),
    ("db:8123", "db:8123"),
    ("http://ifd:p@ss@db/ifd", "http://ifd:***@db/ifd"),
    ("http://ifd:pa/ss@db/ifd", "http://ifd:***@db/ifd"),
    ("http://default@db:8123", "http://default@db:8123"),
    ("http://db:8123/ifd?password=pw", "http://db:8123/ifd?***"),
    ("http://[::1]:8123/ifd", "http://[::1]:8123/ifd"),
    ("garbage", "garbage"),
])
def test_mask_url_shapes(url, shown):
    assert mask_url(url) == shown


def test_masked_hides_a_password_holding_at_and_percent_escapes(monkeypatch):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "https://ifd:p%40ss%2Fw0rd@ch.example:8443/ifd")
    s = load_settings()
    shown = repr(masked(s)) + repr(s) + str(s)
    assert "p%40ss" not in shown and "w0rd" not in shown
    assert masked(s)["clickhouse_url"] == "https://ifd:***@ch.example:8443/ifd"


def test_empty_clickhouse_url_means_embedded(monkeypatch):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "")
    assert load_settings().embedded


def test_live_alias_variable_is_named_once(monkeypatch):
    monkeypatch.setenv("IFD_LIVE_SCHEMA", "bbo-1s")
    with pytest.raises(ConfigError) as err:
        load_section(LiveSettings)
    assert "IFD_LIVE_SCHEMA='bbo-1s'" in str(err.value) and "IFD_LIVE_IFD_LIVE" not in str(err.value)


def test_one_tree_reads_every_section_from_its_own_prefix(monkeypatch):
    monkeypatch.setenv("IFD_SCORING_MIN_DAYS", "3")
    monkeypatch.setenv("IFD_ALERT_MIN_CLASS", "MODERATE")
    monkeypatch.setenv("IFD_LIVE_SYMBOLS", "ES.OPT")
    monkeypatch.setenv("IFD_HISTORY_BUDGET_USD", "2.5")
    monkeypatch.setenv("IFD_DATA_DIR", "/tmp/somewhere")
    s = load_settings(scoring={"enabled": False})
    assert (s.scoring.min_days, s.scoring.enabled) == (3, False)  # env and override merge
    assert s.alerts.min_class == "MODERATE" and s.live.symbols == "ES.OPT"
    assert s.history.budget_usd == 2.5
    assert str(s.alerts.jsonl_path) == "/tmp/somewhere/alerts.jsonl"  # the audit file follows the data


@pytest.mark.parametrize(("var", "value"), [
    ("IFD_SCORING_Z_HIGH", "1"), ("IFD_ALERT_MAX_PER_MINUTE", "0"), ("IFD_LIVE_PORT", "70000"),
    ("IFD_HISTORY_BUDGET_USD", "-1"), ("IFD_SCORING_TOD_BUCKET_S", "450"),
])
def test_a_bad_section_variable_is_named_by_the_one_loader(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        load_settings()


def test_masked_tree_shows_no_secret_of_any_section(monkeypatch):
    monkeypatch.setenv("DATABENTO_API_KEY", "db-KEYKEYKEYKEY")
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "https://ifd:chpassw0rd@ch.example:8443/ifd")
    monkeypatch.setenv("IFD_ALERT_URLS", "slack://TokenAAAAAA/TokenBBBBBB/TokenCCCCCC")
    shown = repr(masked(load_settings()))
    for secret in ("KEYKEYKEY", "chpassw0rd", "TokenAAAAAA", "TokenBBBBBB", "TokenCCCCCC"):
        assert secret not in shown
    assert "slack://***" in shown and "https://ifd:***@ch.example:8443/ifd" in shown


def test_the_package_never_reads_the_environment_directly():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    rooms = ("connectors", "flows", "models", "sinks", "samples", "tools")
    offenders = [str(p.relative_to(root)) for room in rooms for p in (root / room).rglob("*.py")
                 if "os.environ" in p.read_text() or "getenv(" in p.read_text()]
    assert offenders == []


def test_fallback_without_a_backfill_budget_is_refused_with_both_names():
    with pytest.raises(ValidationError, match="IFD_LIVE_FALLBACK_ENABLED needs IFD_LIVE_BACKFILL_BUDGET_USD"):
        LiveSettings(api_key="db-x", fallback_enabled=True)
    assert LiveSettings(api_key="db-x", fallback_enabled=True, backfill_budget_usd=1).fallback_enabled

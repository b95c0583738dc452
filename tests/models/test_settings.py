from __future__ import annotations

import pytest

from models.errors import ConfigError
from models.settings import load_settings


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
    shown = repr(s.masked()) + repr(s)
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
])
def test_bad_clickhouse_url_names_the_variable_and_never_the_password(monkeypatch, url, problem):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", url)
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "IFD_CLICKHOUSE_URL" in text and problem in text
    assert "s3cretpw" not in text and "http(s)://user:password@host" in text


def test_valid_clickhouse_url_is_kept_and_masked(monkeypatch):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "https://ifd:s3cretpw@ch.example:8443/ifd")
    s = load_settings()
    assert s.clickhouse_url.get_secret_value() == "https://ifd:s3cretpw@ch.example:8443/ifd"
    assert "s3cretpw" not in str(s.masked()) and "s3cretpw" not in repr(s)

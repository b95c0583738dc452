"""ServerStore reads its connection from one URL: percent-decoded credentials, path = database."""

from __future__ import annotations

import sys
import types

import pytest

from models.errors import SinkRetryableError
from sinks.clickhouse import ServerStore


@pytest.fixture
def captured(monkeypatch):
    seen: dict = {}
    fake = types.ModuleType("clickhouse_connect")

    def get_client(**kwargs):
        seen.update(kwargs)
        return object()

    fake.get_client = get_client
    monkeypatch.setitem(sys.modules, "clickhouse_connect", fake)
    return seen


def test_credentials_are_percent_decoded_and_the_path_is_the_database(captured):
    ServerStore("https://ifd_writer:p%40ss%3Aw0rd@ch.example.net:9443/analytics")
    assert captured == dict(host="ch.example.net", port=9443, username="ifd_writer",
                            password="p@ss:w0rd", secure=True, database="analytics")


def test_defaults_without_user_port_or_path(captured):
    ServerStore("http://clickhouse")
    assert captured == dict(host="clickhouse", port=8123, username="default", password="",
                            secure=False, database="default")


def test_connection_error_names_the_host_never_the_password(monkeypatch):
    fake = types.ModuleType("clickhouse_connect")

    def get_client(**kwargs):
        msg = f"refused for {kwargs['password']}"
        raise OSError(msg)

    fake.get_client = get_client
    monkeypatch.setitem(sys.modules, "clickhouse_connect", fake)
    with pytest.raises(SinkRetryableError) as err:
        ServerStore("http://u:s3cret-pw@db.internal:8123/ifd")
    assert "db.internal:8123" in str(err.value)
    assert "s3cret-pw" not in str(err.value) and err.value.__cause__ is None

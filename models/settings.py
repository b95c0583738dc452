"""Run configuration, read from ``IFD_*`` environment variables and ``.env``.

| variable                  | default              | meaning                                                     |
|---------------------------|----------------------|-------------------------------------------------------------|
| ``IFD_SOURCE``            | bundled sample       | comma-separated DBN paths or globs (data + definitions);    |
|                           |                      | set empty (``IFD_SOURCE=``) = unset; set but naming no      |
|                           |                      | pattern (``' , '``, blanks) → :class:`ConfigError`          |
| ``IFD_DATA_DIR``          | ``./data``           | sample cache, embedded database, recovery snapshots         |
| ``IFD_CLICKHOUSE_URL``    | unset → embedded chdb| ``http(s)://user:password@host:8123/database`` for a server |
|                           |                      | (empty = unset); anything else (no scheme, no host, a port  |
|                           |                      | outside 1-65535, another scheme) → :class:`ConfigError`     |
| ``IFD_CHDB_PATH``         | ``<data_dir>/chdb``  | embedded chdb data directory (one process per directory)    |
| ``IFD_TRADE_SCHEMA``      | ``auto``             | auto, mbo, mbp-10, mbp-1, tbbo, trades                      |
| ``IFD_WINDOW_LENGTH_S``   | ``300``              | tumbling window length; must divide one day                 |
| ``IFD_ALLOWED_LATENESS_S``| ``10``               | event time a window waits after its end before closing      |
| ``IFD_BATCH_RECORDS``     | ``262144``           | DBN records per source micro-batch                          |
| ``IFD_REPLAY_PARTITIONS`` | ``auto``             | series, file (one partition per daily file, warmed up from  |
|                           |                      | the previous one), auto (file with several processes)       |
| ``IFD_WINDOW_SHARDS``     | ``0``                | window keys contracts are hashed onto (0: one per worker)   |
| ``IFD_SINK_BATCH_ROWS``   | ``20000``            | rows buffered per ClickHouse insert                         |
| ``IFD_L3_ENABLED``        | ``true``             | MBO inputs: order book (side of ``N`` trades), footprint    |
| ``IFD_PROGRESS_INTERVAL_S``| ``2``               | seconds between progress lines (0 disables)                 |
| ``IFD_SCORING_ENABLED``   | ``true``             | score closed windows into ``ifd.ifd_signals``               |
| ``IFD_SCORING_*``         | see fields           | baseline lookback/min days/tod bucket, factor weights,      |
|                           |                      | thresholds (:class:`ScoringSettings`, :mod:`flows.scoring`) |
| ``IFD_ALERT_*``           | see fields           | alert channels and outbox (:class:`AlertSettings`)          |
| ``IFD_LIVE_*``            | see fields           | the live Databento source (:class:`LiveSettings`)           |
| ``IFD_HISTORY_BUDGET_USD``| ``0``                | Databento Historical spend cap (:class:`HistorySettings`)   |
| ``IFD_FEED_*``            | off, 127.0.0.1:8765  | the live signal feed (:class:`FeedSettings`, :mod:`sinks.feed`)|

The tree: :class:`Settings` holds the run's own fields and one section per concern
(``settings.scoring``, ``settings.alerts``, ``settings.live``, ``settings.history``,
``settings.feed``); each
section reads its own prefix. :func:`load_settings` is the one loader (the whole tree) and
:func:`load_section` loads one section; both turn a ``ValidationError`` into a
:class:`ConfigError` that names the variable. :func:`masked` is the one redactor for logs.

Secrets (``IFD_CLICKHOUSE_URL``, ``DATABENTO_API_KEY``, ``IFD_ALERT_URLS``) are ``SecretStr``:
``repr``, :func:`masked` and every :class:`ConfigError` show the URL with its password replaced
by ``***`` (a value that does not parse shows only a masked shape), alert URLs as channel labels
(:mod:`models.redact`), and the key never.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.errors import ConfigError
from models.redact import MASK, channel_labels, mask_url

TradeSchema = Literal["auto", "mbo", "mbp-10", "mbp-1", "tbbo", "trades"]
SECONDS_PER_DAY = 86_400


def _section_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", frozen=True,
                              populate_by_name=True, hide_input_in_errors=True)


class ScoringSettings(BaseSettings):
    """Baselines, weights and thresholds of the IFD score (``IFD_SCORING_*``; :mod:`flows.scoring`)."""

    model_config = _section_config("IFD_SCORING_")

    enabled: bool = True
    lookback_days: int = Field(default=20, ge=1)
    min_days: int = Field(default=5, ge=1)
    tod_bucket_s: int = Field(default=1800, gt=0)
    w_volume: float = Field(default=0.45, ge=0)
    w_dominance: float = Field(default=0.35, ge=0)
    w_size: float = Field(default=0.20, ge=0)
    mm_penalty: float = Field(default=1.0, ge=0, le=1)
    z_low: float = 2.0
    z_high: float = 6.0
    size_full: float = Field(default=8.0, gt=1)
    sample_volume: float = Field(default=100.0, gt=0)
    sweep_min_strikes: int = Field(default=3, ge=2)
    sweep_interval_s: float = Field(default=1.0, gt=0, le=300)
    """A sweep's prints fall inside one interval this long (:mod:`flows.sweeps`)."""
    sweep_min_volume: float = Field(default=20.0, ge=0)
    block_min_lots: int = Field(default=50, ge=1)
    """One print of at least this many contracts is a block."""
    block_min_lots_by_product: dict[str, int] = Field(default_factory=dict)
    """Per-product block sizes by underlying-symbol prefix, JSON: ``{"NQ": 50, "ES": 100}``."""
    strong: float = Field(default=0.75, ge=0, le=1)
    moderate: float = Field(default=0.55, ge=0, le=1)
    monitor: float = Field(default=0.35, ge=0, le=1)
    moneyness_step_pct: float = Field(default=0.5, gt=0)
    shrink_days: float = Field(default=5.0, ge=0)
    """Prior weight, in days, of the strike-distance bucket in a thin contract's baseline."""
    scorers: str = "ifd:1,l3:0.5"
    """Signal scorers and their weights for the consensus, ``name:weight,…``; a name that is not
    built in (``ifd``, ``l3``) is a dotted path ``package.module:Class`` (:mod:`flows.consensus`)."""

    @model_validator(mode="after")
    def _consistent(self) -> ScoringSettings:
        if not self.monitor <= self.moderate <= self.strong:
            msg = "IFD_SCORING_MONITOR <= IFD_SCORING_MODERATE <= IFD_SCORING_STRONG must hold"
            raise ValueError(msg)
        if self.z_high <= self.z_low:
            msg = "IFD_SCORING_Z_HIGH must exceed IFD_SCORING_Z_LOW"
            raise ValueError(msg)
        if SECONDS_PER_DAY % self.tod_bucket_s:
            msg = "IFD_SCORING_TOD_BUCKET_S must divide 86400"
            raise ValueError(msg)
        if self.w_volume + self.w_dominance + self.w_size <= 0:
            msg = "IFD_SCORING_W_* weights must not all be 0"
            raise ValueError(msg)
        return self


AlertClass = Literal["STRONG", "MODERATE", "MONITOR"]
_URL_SPLIT_RE = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class AlertSettings(BaseSettings):
    """Alert channels, threshold and outbox (``IFD_ALERT_*``; :mod:`sinks.alerts`)."""

    model_config = _section_config("IFD_ALERT_")

    urls: SecretStr | None = Field(
        default=None, description="Comma-separated Apprise URLs; unset = JSONL file only."
    )
    min_class: AlertClass = "STRONG"
    jsonl_path: Path | None = Path("data/alerts.jsonl")
    outbox_path: Path | None = Field(
        default=None,
        description="SQLite outbox; None = beside jsonl_path (in memory when that is None too).",
    )
    max_per_minute: int = Field(default=30, ge=1)
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_initial_s: float = Field(default=0.5, ge=0.0)
    timeout_s: float = Field(default=10.0, gt=0.0)
    queue_size: int = Field(
        default=1000, ge=1,
        description="Outbox rows the worker reads per query (prefetch); never causes drops.",
    )
    concurrency: int = Field(
        default=4, ge=1, le=64,
        description="Messages delivered at once (each to every channel); also the most re-sent after a crash.",
    )
    digest_min: int = Field(
        default=5, ge=0,
        description="Signals waiting together that go out as one digest message; 0 or 1 = never.",
    )
    digest_max: int = Field(default=50, ge=2, le=1000, description="Most signals in one digest message.")
    first_wait_s: float = Field(default=0.1, ge=0.0, le=5.0)
    """Live: longest time the flow waits, after committing a window's alerts, for their delivery
    before it stores the window and builds its other signals (alerts first; 0: never waits)."""

    @field_validator("jsonl_path", "outbox_path", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        """Read an empty variable (``IFD_ALERT_JSONL_PATH=``) as no file, not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    def url_list(self) -> list[str]:
        """Return the configured Apprise URLs (secret!), blanks removed; empty when unset."""
        if self.urls is None:
            return []
        raw = self.urls.get_secret_value().strip()
        return [part.strip() for part in _URL_SPLIT_RE.split(raw) if part.strip()]

    def channel_labels(self) -> list[str]:
        """Return the redacted channel names (``json://***``, ``json://***#2`` …), URL order."""
        return channel_labels(self.url_list())

    def outbox_file(self) -> Path | None:
        """Return the outbox file: ``outbox_path``, else ``<jsonl stem>.outbox.sqlite`` beside the JSONL file.

        Returns
        -------
        Path | None
            None when both paths are unset: the dispatcher then keeps its
            outbox in memory (not durable).
        """
        if self.outbox_path is not None:
            return self.outbox_path
        if self.jsonl_path is not None:
            return self.jsonl_path.with_name(f"{self.jsonl_path.stem}.outbox.sqlite")
        return None


class FeedSettings(BaseSettings):
    """The live signal feed (``IFD_FEED_*``; :mod:`sinks.feed`): WebSocket push + JSON API."""

    model_config = _section_config("IFD_FEED_")

    enabled: bool = False
    """Serve the feed during a run (``ifd run --serve`` sets it)."""
    host: str = "127.0.0.1"
    """Interface to listen on (``0.0.0.0`` for every interface)."""
    port: int = Field(default=8765, ge=0, le=65535)
    """TCP port; 0 picks a free one (logged)."""
    client_queue: int = Field(default=1000, ge=1)
    """Messages a WebSocket client may still have waiting when signals are published; more: dropped."""
    recent: int = Field(default=10_000, ge=0)
    """Signals kept in memory for ``GET /signals``."""
    max_clients: int = Field(default=200, ge=1)
    """Concurrent WebSocket clients; more are refused (close code 1013)."""
    linger_s: float = Field(default=0.0, ge=0)
    """Seconds the feed keeps serving after the run ends (a replay: time to read ``/signals``)."""


class _DatabentoKey(BaseSettings):
    """The Databento API key (``DATABENTO_API_KEY``), shared by the live and historical sections."""

    api_key: SecretStr | None = Field(default=None, validation_alias="DATABENTO_API_KEY")

    def key(self) -> str:
        """Return the Databento API key (secret).

        Raises
        ------
        ConfigError
            When ``DATABENTO_API_KEY`` is not set.
        """
        if self.api_key is None or not self.api_key.get_secret_value().strip():
            msg = ("DATABENTO_API_KEY is not set: export it or put DATABENTO_API_KEY=db-… in .env "
                   "(keys: https://databento.com/portal/keys)")
            raise ConfigError(msg)
        return self.api_key.get_secret_value().strip()


class HistorySettings(_DatabentoKey):
    """Databento Historical fetches of the baseline job (``IFD_HISTORY_*``)."""

    model_config = _section_config("IFD_HISTORY_")

    budget_usd: float = Field(
        default=0.0, ge=0,
        description="Most USD `tools.baseline_job --fetch-days` may spend on Databento Historical; 0 = refuse.")


LiveSchema = Literal["trades", "tbbo", "mbp-1", "mbo"]
SessionPreset = Literal["globex", "rth", "always"]


class LiveSettings(_DatabentoKey):
    """Live Databento source settings (``IFD_LIVE_*``; the key is ``DATABENTO_API_KEY``).

    Cost model defaults are placeholders: set them to your plan's rates.
    """

    model_config = _section_config("IFD_LIVE_")

    dataset: str = "GLBX.MDP3"
    symbols: str = "NQ.OPT"
    stype_in: Literal["parent", "raw_symbol", "instrument_id"] = "parent"
    schema_name: LiveSchema = Field(default="tbbo", validation_alias="IFD_LIVE_SCHEMA")
    gateway: str | None = None
    port: int = Field(default=13000, gt=0, lt=65536)
    heartbeat_interval_s: int = Field(default=5, ge=1)
    """Gateway heartbeat after this much silence (Databento allows 5-1800 s); a heartbeat seals the
    open ``ts_recv`` second, so it bounds how long a quiet second's trades wait."""
    heartbeat_grace_s: float = Field(default=10.0, ge=0)
    reconnect_initial_s: float = Field(default=1.0, ge=0)
    reconnect_max_s: float = Field(default=60.0, ge=0)
    reconnect_max_attempts: int = Field(default=20, ge=1)
    replay_overlap_s: float = Field(default=2.0, ge=0)
    replay_horizon_s: float = Field(default=86_400.0, gt=0)
    backfill_budget_usd: float = Field(default=0.0, ge=0)
    """Most USD one Databento Historical backfill of a gap older than the replay horizon may cost
    (``metadata.get_cost`` first); 0 = backfill off, such a gap stops the run with instructions."""
    backfill_margin_s: float = Field(default=3_600.0, gt=0)
    """A backfill ends this long inside the replay horizon (at most half the horizon), so the live
    replay that follows it is still within reach (:mod:`connectors.live_backfill`)."""
    historical_gateway: str | None = None
    """Databento Historical API base URL (None: Databento's own)."""
    fallback_enabled: bool = False
    """After ``reconnect_max_attempts`` failed reconnects, keep running on Databento Historical
    catch-up (each request priced and capped by ``backfill_budget_usd``) and probe the live gateway
    every ``reconnect_max_s``; back to live when it answers. Off: the run stops (exit 5)."""
    fallback_poll_s: float = Field(default=60.0, gt=0)
    """Seconds between Historical catch-up requests in fallback mode."""
    daily_budget_usd: float = Field(default=50.0, gt=0)
    budget_stop_fraction: float = Field(default=0.8, gt=0, le=1)
    cost_per_gb_usd: float = Field(default=1.0, ge=0)
    cost_per_hour_usd: float = Field(default=0.0, ge=0)
    session: SessionPreset = "globex"
    batch_records: int = Field(default=65_536, ge=1, le=1 << 20)
    seal_grace_s: float = Field(default=0.2, ge=0)
    """A live ``ts_recv`` second is emitted once the wall clock is this far past its end, without
    waiting for the next second's record or a heartbeat (0 = wait); only seconds under a minute
    old (replayed history is sealed by its own later records)."""
    gc_paced: bool = True
    """Run CPython's full garbage collections half a window after each close, never during one
    (:mod:`models.gc_pacing`; a full collection holds the GIL for 50-220 ms here)."""
    idle_exit_s: float | None = Field(default=None, gt=0)
    """Exit when no new data record was accepted for this long, counted from the last new record
    or the first reconnect after it (tests, one-off catch-up runs)."""

    @model_validator(mode="after")
    def _fallback_needs_a_budget(self) -> LiveSettings:
        if self.fallback_enabled and self.backfill_budget_usd <= 0:
            msg = ("IFD_LIVE_FALLBACK_ENABLED needs IFD_LIVE_BACKFILL_BUDGET_USD > 0 (each Historical "
                   "catch-up request is priced against it)")
            raise ValueError(msg)
        return self

    def symbol_list(self) -> list[str]:
        """``IFD_LIVE_SYMBOLS`` split on commas."""
        return [s.strip() for s in self.symbols.split(",") if s.strip()]


class Settings(BaseSettings):
    """Frozen pipeline settings; build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="IFD_", env_file=".env", extra="ignore", frozen=True,
        hide_input_in_errors=True,  # a raw ValidationError must not print a secret either
    )
    # the sections are whole models, never read from IFD_SCORING / IFD_ALERTS / ... themselves

    mode: Literal["replay", "live"] = "replay"
    source: str | None = Field(
        default=None, description="Comma-separated DBN file paths or globs; unset = sample."
    )
    data_dir: Path = Path("data")
    clickhouse_url: SecretStr | None = None
    chdb_path: Path | None = None
    trade_schema: TradeSchema = "auto"
    window_length_s: int = Field(default=300, gt=0)
    allowed_lateness_s: float = Field(default=10.0, ge=0)
    batch_records: int = Field(default=262_144, ge=1, le=16_777_216)
    replay_partitions: Literal["auto", "series", "file"] = "auto"
    """Replay source partitions: ``series`` reads each file series (one file per day) in one
    partition; ``file`` gives every file whose CME session began inside the previous file its
    own partition, warmed up from that file's session trades (same results,
    :func:`connectors.inputs.split_series`), so several processes share one series; ``auto``
    (default) = ``file`` when the run has more than one process (``-a``), else ``series``."""
    window_shards: int = Field(default=0, ge=0, le=4096)
    """Window keys contracts are hashed onto; 0 (default) = one per bytewax worker of the run."""
    sink_batch_rows: int = Field(default=20_000, ge=1)
    """Rows buffered per table before an insert (a replay also flushes every second, live at every
    window close). Larger inserts make fewer MergeTree parts to merge, but embedded chdb holds
    about twice an insert's Arrow size while it converts and sorts it: 100,000 rows raised a
    replay's peak RSS by ~100 MB (``benchmarks/bench_rss.py``: 593 → 693 MB at 5 days, 692 →
    866 MB at 20) for a CPU gain lost in the noise of the anchor benchmark."""
    l3_enabled: bool = True
    """MBO inputs: rebuild the order book (:mod:`flows.book`; the BBO gives ``N`` trades a side by
    the quote rule) and write the footprint (``ifd.footprint``, :mod:`flows.footprint`)."""
    l3_book_threads: int = Field(default=2, ge=1, le=64)
    """Order-book shards per worker, each applied on its own thread without the GIL
    (:class:`flows.book.OrderBooks`; instruments are split by a hash of instrument_id, results
    do not depend on it). ``benchmarks/bench_l3.py``: 2 threads on 2 cores took the 10 M-record
    MBO replay from 5.6 s to ~4.7 s."""
    progress_interval_s: float = Field(default=2.0, ge=0)
    bytewax_addresses: str | None = Field(
        default=None, validation_alias="BYTEWAX_ADDRESSES",
        description="bytewax's own -a/--addresses variable, read to refuse embedded chdb across processes.")
    bytewax_process_id: int | None = Field(
        default=None, ge=0, validation_alias="BYTEWAX_PROCESS_ID",
        description="bytewax's own -i/--process-id variable: which replay file partitions this process lists.")
    scoring: ScoringSettings = Field(default_factory=lambda: ScoringSettings())
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings())
    live: LiveSettings = Field(default_factory=lambda: LiveSettings())
    history: HistorySettings = Field(default_factory=lambda: HistorySettings())
    feed: FeedSettings = Field(default_factory=lambda: FeedSettings())

    @field_validator("source")
    @classmethod
    def _source_names_inputs(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None  # unset (or set empty): the bundled sample
        if not [part for part in value.split(",") if part.strip()]:
            msg = ("names no file: give comma-separated DBN paths or globs "
                   "(e.g. 'data/*.dbn.zst'), or unset it to use the bundled sample")
            raise ValueError(msg)
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _url_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        url = value.get_secret_value().strip()
        if not url:
            return None
        problem = _url_problem(url)
        if problem:
            # without "://" or "@" nothing says which part is a password: show only the length
            given = (f"given, password masked: {mask_url(url)}" if "://" in url or "@" in url
                     else f"given: {len(url)} characters, not shown")
            msg = f"{problem}; expected http(s)://user:password@host:8123/database ({given})"
            raise ValueError(msg)
        return SecretStr(url)

    @field_validator("window_length_s")
    @classmethod
    def _window_divides_day(cls, value: int) -> int:
        if SECONDS_PER_DAY % value:
            msg = f"must divide 86400 so windows align to UTC midnight, got {value}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _sections_consistent(self) -> Settings:
        bucket = self.scoring.tod_bucket_s
        if bucket % self.window_length_s:
            msg = "IFD_SCORING_TOD_BUCKET_S must be a multiple of IFD_WINDOW_LENGTH_S"
            raise ValueError(msg)
        return self

    @property
    def embedded(self) -> bool:
        """True when no ``IFD_CLICKHOUSE_URL`` is set (embedded chdb)."""
        return self.clickhouse_url is None

    def summary(self) -> str:
        """One log line of what this run does (no secrets; :func:`masked` has every field)."""
        source = "the bundled sample" if self.source is None else self.source
        if len(source) > 80:
            source = source[:77] + "..."
        if self.clickhouse_url is None:
            store = f"embedded chdb {self.effective_chdb_path}"
        else:
            store = "ClickHouse " + mask_url(self.clickhouse_url.get_secret_value())
        scoring = (f"scoring on ({self.scoring.lookback_days}-day baselines)"
                   if self.scoring.enabled else "scoring off")
        feed = (f"feed on {self.feed.host}:{self.feed.port}" if self.feed.enabled
                else "feed off")
        what = "live " + self.live.symbols if self.mode == "live" else f"replay of {source}"
        return (f"{what} -> {store}; {self.window_length_s} s windows, {scoring}, "
                f"L3 {'on' if self.l3_enabled else 'off'}, {feed}")

    @property
    def effective_chdb_path(self) -> Path:
        """The chdb data directory: ``IFD_CHDB_PATH`` or ``<data_dir>/chdb``."""
        return self.chdb_path if self.chdb_path is not None else self.data_dir / "chdb"

    def source_patterns(self) -> list[str]:
        """``IFD_SOURCE`` split on commas, blanks removed (empty when unset)."""
        if not self.source:
            return []
        return [part.strip() for part in self.source.split(",") if part.strip()]


def _url_problem(url: str) -> str:
    """Say what is wrong with a ClickHouse URL ('' if nothing)."""
    parts = urlsplit(url)
    if "://" not in url:
        return "no scheme"
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http or https"
    if not parts.hostname:
        return "no host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        # an unencoded / ? or # in the password ends the host early: "u:pa/ss@h" reads as port "pa"
        hint = (" (a password holding / ? # or @ must be percent-encoded)"
                if "@" in parts.path + parts.query + parts.fragment else "")
        return f"the port is not a number in 1-65535{hint}"
    return ""


def _env_names(model: type[BaseSettings], prefix: str) -> dict[str, str]:
    """Map each field name and alias of ``model`` to the variable that sets it."""
    names: dict[str, str] = {}
    for field_name, info in model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        names[field_name] = alias or prefix + field_name.upper()
        if alias:
            names[alias] = alias
    return names


def _secret_fields(model: type[BaseSettings]) -> frozenset[str]:
    """Field names (and aliases) of ``model`` typed ``SecretStr`` (optionally ``| None``)."""
    secret: set[str] = set()
    for field_name, info in model.model_fields.items():
        if info.annotation is SecretStr or SecretStr in get_args(info.annotation):
            secret.add(field_name)
            if isinstance(info.validation_alias, str):
                secret.add(info.validation_alias)
    return frozenset(secret)


def _problems(exc: ValidationError, model: type[BaseSettings], prefix: str) -> list[str]:
    """Describe each error as ``NAME=<given>: what is wrong``; secret values are never shown.

    A secret field's message is ours (:meth:`Settings._url_is_http` puts a masked form in it) or
    pydantic's, which does not quote the input; a model-level error names its variables itself
    and its input (every setting, secrets included) is not shown.
    """
    names = _env_names(model, prefix)
    secret = _secret_fields(model)
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        text = err["msg"].removeprefix("Value error, ")
        if not field:
            problems.append(text)
            continue
        name = names.get(field, prefix + field.upper())
        given = err.get("input")
        if field in secret or not isinstance(given, str | int | float | bool):
            problems.append(f"{name}: {text}")
        else:
            problems.append(f"{name}={given!r}: {text}")
    return problems


SECTIONS: dict[str, type[BaseSettings]] = {
    "scoring": ScoringSettings, "alerts": AlertSettings, "live": LiveSettings, "history": HistorySettings,
    "feed": FeedSettings,
}
"""Sections of :class:`Settings` by field name."""

_S = TypeVar("_S", bound=BaseSettings)


def load_section(model: type[_S], **overrides: Any) -> _S:
    """Read one section (or :class:`Settings` without sections) from the environment and ``.env``.

    Raises
    ------
    ConfigError
        When a variable is invalid; the message names the variable (``IFD_<SECTION>_<NAME>``), the
        value given (masked for secrets) and what is accepted.
    """
    try:
        return model(**overrides)
    except ValidationError as exc:
        candidates: list[type[BaseSettings]] = [model, *SECTIONS.values()]
        failed = next((m for m in candidates if m.__name__ == exc.title), model)
        problems = _problems(exc, failed, str(failed.model_config.get("env_prefix", "")))
    # raised outside the handler: no __context__ holding the raw (secret) input
    what = {"LiveSettings": "live ", "AlertSettings": "alert "}.get(failed.__name__, "")
    msg = f"invalid {what}configuration: " + "; ".join(problems)
    raise ConfigError(msg)


def load_settings(**overrides: Any) -> Settings:
    """Read the whole settings tree from the environment (and ``.env``), applying overrides.

    Parameters
    ----------
    **overrides
        Top-level fields by name (``data_dir=…``); a section by its name, as a dict of its fields
        (``scoring={"enabled": False}``) or as a built section model.

    Raises
    ------
    ConfigError
        When a variable is invalid (see :func:`load_section`).
    """
    for name, model in SECTIONS.items():
        given = overrides.get(name)
        if not isinstance(given, model):
            overrides[name] = load_section(model, **(given or {}))
    settings = load_section(Settings, **overrides)
    if "jsonl_path" not in settings.alerts.model_fields_set:  # the audit file lives with the data
        alerts = settings.alerts.model_copy(update={"jsonl_path": settings.data_dir / "alerts.jsonl"})
        settings = settings.model_copy(update={"alerts": alerts})
    return settings


def masked(model: BaseModel) -> dict[str, object]:
    """Return ``model``'s values for logging, secrets shown through :mod:`models.redact` only.

    A URL secret shows with its password masked, alert URLs as channel labels, any other secret
    (the API key) as ``***``; nested sections are masked the same way.
    """
    shown: dict[str, object] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            shown[name] = masked(value)
        elif isinstance(value, SecretStr):
            if isinstance(model, AlertSettings) and name == "urls":
                shown[name] = model.channel_labels()
            elif "://" in value.get_secret_value():
                shown[name] = mask_url(value.get_secret_value())
            else:
                shown[name] = MASK
        elif isinstance(model, AlertSettings) and name == "outbox_path":
            shown[name] = model.outbox_file() or ":memory:"
        else:
            shown[name] = value
    return shown

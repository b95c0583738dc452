-- IFD schema. Applied idempotently at start (sinks.clickhouse.apply_schema);
-- the same statements run on embedded chdb and on a ClickHouse server.
-- {{DOMINANT_SIDE}} / {{DOMINANCE_CONFIDENCE}} are rendered from flows.pressure so the
-- view and the Python code share one formula.

CREATE DATABASE IF NOT EXISTS ifd;

-- One row per (contract, window, source batch): additive parts. A part's
-- identity is (window_start, source, batch_seq, instrument_id,
-- first_trade_ts); replays, retries and bytewax re-emissions rewrite
-- identical rows, which ReplacingMergeTree collapses, so sums over distinct
-- parts are final. The identity does not depend on how the instrument was
-- resolved (contract_key): a re-run after adding definition files replaces
-- the old ID|... rows instead of adding contract rows beside them. Two
-- definitions of one id inside one window and batch (CME reuses ids) give
-- two parts, told apart by their first trade's time.
-- source is the input's content identity (connectors/inputs.py), not its
-- file name: the same file under another name rewrites the same rows.
--
-- batch_seq, the rule that keeps identities collision-free and replay-stable:
-- * DBN files: the 0-based batch number of IFD_BATCH_RECORDS records in the
--   file (fixed batch size => the same records get the same number).
-- * Live (connectors/live_resume.py): ts_recv second * 4096 + split. A batch
--   is one whole ts_recv second, emitted only once sealed (a record of a later
--   second, a gateway heartbeat, or the end of the run), so reconnects, symbol
--   mappings stamped "now", stalls and restarts never cut a second in two.
--   split is 0 unless the same second is re-opened (records after a heartbeat)
--   or holds more than IFD_LIVE_BATCH_RECORDS records (cut at fixed counts):
--   then 1, 2, ... in emission order, remembered in the source snapshot, so
--   two pieces never share an identity and a replay after a restart cuts
--   and numbers them the same way.
CREATE TABLE IF NOT EXISTS ifd.pressure_parts
(
    window_start     DateTime64(3, 'UTC'),
    window_end       DateTime64(3, 'UTC'),
    contract_key     String,
    source           String,
    batch_seq        UInt64,
    instrument_id    UInt32,
    symbol           String,
    underlying       LowCardinality(String),
    expiration       Nullable(DateTime64(3, 'UTC')),
    strike           Nullable(Float64),
    option_type      LowCardinality(String),
    defined          UInt8,
    bid_volume       UInt64,
    ask_volume       UInt64,
    unknown_volume   UInt64,
    buy_trades       UInt64,
    sell_trades      UInt64,
    unknown_trades   UInt64,
    notional         Float64,
    max_trade_size   UInt64,
    first_trade_ts   DateTime64(9, 'UTC'),
    last_trade_ts    DateTime64(9, 'UTC'),
    flag_volume      UInt64,
    quote_volume     UInt64,
    tick_volume      UInt64,
    late             UInt8,
    spread_volume    UInt64 DEFAULT 0,
    sweep_volume     UInt64 DEFAULT 0,
    block_volume     UInt64 DEFAULT 0,
    block_trades     UInt64 DEFAULT 0,
    multiplier       Nullable(Float64),
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, source, batch_seq, instrument_id, first_trade_ts)
SETTINGS non_replicated_deduplication_window = 1000;

-- databases created before spread detection
ALTER TABLE ifd.pressure_parts ADD COLUMN IF NOT EXISTS spread_volume UInt64 DEFAULT 0 AFTER late;
-- databases created before sweep and block tags
ALTER TABLE ifd.pressure_parts ADD COLUMN IF NOT EXISTS sweep_volume UInt64 DEFAULT 0 AFTER spread_volume;
ALTER TABLE ifd.pressure_parts ADD COLUMN IF NOT EXISTS block_volume UInt64 DEFAULT 0 AFTER sweep_volume;
ALTER TABLE ifd.pressure_parts ADD COLUMN IF NOT EXISTS block_trades UInt64 DEFAULT 0 AFTER block_volume;
-- databases created before premiums (USD per index point per contract, from the definition)
ALTER TABLE ifd.pressure_parts ADD COLUMN IF NOT EXISTS multiplier Nullable(Float64) AFTER block_trades;

-- Final numbers: one row per (contract, window).
CREATE OR REPLACE VIEW ifd.pressure_metrics AS
SELECT
    window_start,
    window_end,
    contract_key,
    instrument_id,
    symbol,
    underlying,
    expiration,
    strike,
    option_type,
    bid_volume,
    ask_volume,
    unknown_volume,
    bid_volume + ask_volume + unknown_volume AS total_volume,
    if(bid_volume = 0, NULL, ask_volume / bid_volume) AS pressure_ratio,
    buy_trades,
    sell_trades,
    buy_trades + sell_trades + unknown_trades AS total_trades,
    if(total_trades = 0, 0., total_volume / total_trades) AS avg_trade_size,
    max_trade_size,
    if(total_volume = 0, NULL, notional / total_volume) AS vwap,
    {{DOMINANT_SIDE}} AS dominant_side,
    least(1., {{DOMINANCE_CONFIDENCE}}) AS dominance_confidence,
    first_trade_ts,
    last_trade_ts,
    flag_volume,
    quote_volume,
    tick_volume,
    unknown_volume AS unknown_method_volume,
    spread_volume,
    sweep_volume,
    block_volume,
    block_trades,
    notional * multiplier AS premium_usd,
    if(expiration IS NULL, NULL,
       (toUnixTimestamp64Milli(expiration) - toUnixTimestamp64Milli(window_end)) / 86400000.)
        AS days_to_expiry,
    parts
FROM
(
    SELECT
        window_start,
        any(window_end) AS window_end,
        contract_key,
        any(instrument_id) AS instrument_id,
        any(symbol) AS symbol,
        any(underlying) AS underlying,
        any(expiration) AS expiration,
        any(strike) AS strike,
        any(option_type) AS option_type,
        sum(bid_volume) AS bid_volume,
        sum(ask_volume) AS ask_volume,
        sum(unknown_volume) AS unknown_volume,
        sum(buy_trades) AS buy_trades,
        sum(sell_trades) AS sell_trades,
        sum(unknown_trades) AS unknown_trades,
        sum(notional) AS notional,
        max(max_trade_size) AS max_trade_size,
        min(first_trade_ts) AS first_trade_ts,
        max(last_trade_ts) AS last_trade_ts,
        sum(flag_volume) AS flag_volume,
        sum(quote_volume) AS quote_volume,
        sum(tick_volume) AS tick_volume,
        sum(spread_volume) AS spread_volume,
        sum(sweep_volume) AS sweep_volume,
        sum(block_volume) AS block_volume,
        sum(block_trades) AS block_trades,
        any(multiplier) AS multiplier,
        count() AS parts
    FROM ifd.pressure_parts FINAL
    GROUP BY window_start, contract_key
);

-- Strike + option type across expiries (options only).
CREATE OR REPLACE VIEW ifd.pressure_by_strike AS
SELECT
    window_start,
    window_end,
    underlying,
    strike,
    option_type,
    expirations,
    bid_volume,
    ask_volume,
    unknown_volume,
    total_volume,
    if(bid_volume = 0, NULL, ask_volume / bid_volume) AS pressure_ratio,
    buy_trades,
    sell_trades,
    total_trades,
    {{DOMINANT_SIDE}} AS dominant_side,
    least(1., {{DOMINANCE_CONFIDENCE}}) AS dominance_confidence
FROM
(
    SELECT
        window_start,
        any(window_end) AS window_end,
        underlying,
        strike,
        option_type,
        uniqExact(expiration) AS expirations,
        sum(bid_volume) AS bid_volume,
        sum(ask_volume) AS ask_volume,
        sum(unknown_volume) AS unknown_volume,
        sum(total_volume) AS total_volume,
        sum(buy_trades) AS buy_trades,
        sum(sell_trades) AS sell_trades,
        sum(total_trades) AS total_trades
    FROM ifd.pressure_metrics
    WHERE option_type IN ('C', 'P')
    GROUP BY window_start, underlying, strike, option_type
);

-- One row per source batch: what was read, what counted, what was skipped.
CREATE TABLE IF NOT EXISTS ifd.ingest_batches
(
    source                      String,
    batch_seq                   UInt64,
    records                     UInt64,
    trades                      UInt64,
    undefined_instrument_trades UInt64,
    dead_letters                UInt64,
    dead_letter_reasons         Map(String, UInt64),
    skipped                     Map(String, UInt64),
    bytes_read                  UInt64,
    total_bytes                 UInt64,
    max_ts_event                DateTime64(9, 'UTC'),
    inserted_at                 DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source, batch_seq)
SETTINGS non_replicated_deduplication_window = 1000;

-- file: the path the input was read from (source is its content identity);
-- error: non-empty on the batch that ended an input early (truncated or
-- corrupt file): that input, and so the run, is partial.
ALTER TABLE ifd.ingest_batches ADD COLUMN IF NOT EXISTS file String DEFAULT '' AFTER max_ts_event;
ALTER TABLE ifd.ingest_batches ADD COLUMN IF NOT EXISTS error String DEFAULT '' AFTER file;
-- live: 1 for batches of the live feed (their event time is near wall time; a replay's is not);
-- processed_at: wall time the sink received the batch's counters (processing done), ms.
ALTER TABLE ifd.ingest_batches ADD COLUMN IF NOT EXISTS live UInt8 DEFAULT 0 AFTER error;
ALTER TABLE ifd.ingest_batches ADD COLUMN IF NOT EXISTS processed_at DateTime64(3, 'UTC') DEFAULT inserted_at AFTER live;

-- Bad trade records, one row each (nothing is dropped silently).
CREATE TABLE IF NOT EXISTS ifd.dead_letters
(
    source        String,
    record_index  UInt64,
    reason        LowCardinality(String),
    rtype         UInt8,
    instrument_id UInt32,
    ts_event      DateTime64(9, 'UTC'),
    price_raw     Int64,
    size          Int64,
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source, record_index, reason)
SETTINGS non_replicated_deduplication_window = 1000;

-- IFD signals: one row per (window, contract); replays rewrite the same row.
CREATE TABLE IF NOT EXISTS ifd.ifd_signals
(
    window_start      DateTime64(3, 'UTC'),
    window_end        DateTime64(3, 'UTC'),
    contract_key      String,
    instrument_id     UInt32,
    symbol            String,
    underlying        LowCardinality(String),
    expiration        Nullable(DateTime64(3, 'UTC')),
    strike            Nullable(Float64),
    option_type       LowCardinality(String),
    direction         LowCardinality(String),
    signal_class      LowCardinality(String),
    confidence        Float64,
    bid_volume        UInt64,
    ask_volume        UInt64,
    total_volume      UInt64,
    total_trades      UInt64,
    avg_trade_size    Float64,
    volume_z          Float64,
    dominance         Float64,
    size_ratio        Float64,
    sample_factor     Float64,
    mm_score          Float64,
    baseline_scope    LowCardinality(String),
    baseline_windows  UInt32,
    baseline_volume   Float64,
    baseline_avg_size Float64,
    sweep_strikes     UInt16,
    block_trades      UInt32 DEFAULT 0,
    sentiment         LowCardinality(String) DEFAULT 'NEUTRAL',
    dominant_share    Float64 DEFAULT 0,
    premium_usd       Nullable(Float64),
    days_to_expiry    Nullable(Float64),
    moneyness_pct     Nullable(Float64),
    reason            String,
    scores            String DEFAULT '{}',
    consensus         Nullable(Float64),
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, contract_key)
SETTINGS non_replicated_deduplication_window = 1000;

-- databases created before block tags
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS block_trades UInt32 DEFAULT 0 AFTER sweep_strikes;
-- databases created before the trader columns
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS sentiment LowCardinality(String) DEFAULT 'NEUTRAL' AFTER block_trades;
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS dominant_share Float64 DEFAULT 0 AFTER sentiment;
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS premium_usd Nullable(Float64) AFTER dominant_share;
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS days_to_expiry Nullable(Float64) AFTER premium_usd;
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS moneyness_pct Nullable(Float64) AFTER days_to_expiry;
-- databases created before the scorer consensus
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS scores String DEFAULT '{}' AFTER reason;
ALTER TABLE ifd.ifd_signals ADD COLUMN IF NOT EXISTS consensus Nullable(Float64) AFTER scores;

-- Baselines computed by the baseline job (python -m tools.baseline_job), for inspection and boards.
CREATE TABLE IF NOT EXISTS ifd.baselines
(
    as_of            Date,
    baseline_key     String,
    scope            LowCardinality(String),
    tod_bucket       String,
    days             UInt32,
    volume_median    Float64,
    volume_scale     Float64,
    avg_trade_size   Float64,
    trades_median    Float64,
    abs_imbalance    Float64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (as_of, baseline_key, tod_bucket);

-- Live source usage per minute (budget, health board).
CREATE TABLE IF NOT EXISTS ifd.usage
(
    minute        DateTime('UTC'),
    source        LowCardinality(String),
    records       UInt64,
    bytes         UInt64,
    est_cost_usd  Float64,
    reconnects    UInt32,
    lag_ms        Float64,
    last_error    String,
    mode          LowCardinality(String) DEFAULT 'live',
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (minute, source);
-- mode: live (gateway connection), historical (fallback catch-up, IFD_LIVE_FALLBACK_ENABLED) or
-- down (reconnecting) when the minute closed
ALTER TABLE ifd.usage ADD COLUMN IF NOT EXISTS mode LowCardinality(String) DEFAULT 'live' AFTER last_error;

-- Databento Historical backfills of live gaps older than the intraday-replay horizon
-- (connectors/live_backfill.py): one row per request, whatever its outcome (done, refused over
-- IFD_LIVE_BACKFILL_BUDGET_USD, failed). [range_start, range_end) is on ts_event; cost_usd is
-- metadata.get_cost of definitions + the trade schema; duplicates = fetched records already emitted;
-- kind: gap (resume beyond the horizon) or fallback (catch-up while the gateway is down).
CREATE TABLE IF NOT EXISTS ifd.backfills
(
    requested_at  DateTime64(3, 'UTC'),
    source        LowCardinality(String),
    dataset       LowCardinality(String),
    schema        LowCardinality(String),
    symbols       String,
    range_start   DateTime64(9, 'UTC'),
    range_end     DateTime64(9, 'UTC'),
    cost_usd      Float64,
    budget_usd    Float64,
    outcome       LowCardinality(String),
    records       UInt64,
    duplicates    UInt64,
    seconds       Float64,
    error         String,
    kind          LowCardinality(String),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (source, requested_at, range_start);

-- End-to-end latency of a live run per wall-clock minute, stage and process (models/latency.py):
-- record = trade ts_recv -> batch aggregated; window_written = window end -> pressure rows
-- stored; signal_scored = window end -> signal scored; alert_delivered = signal in the outbox ->
-- accepted by a channel. Percentiles are over every sample of the minute (numpy linear).
CREATE TABLE IF NOT EXISTS ifd.latency
(
    minute        DateTime('UTC'),
    stage         LowCardinality(String),
    process       LowCardinality(String),
    samples       UInt64,
    p50_ms        Float64,
    p95_ms        Float64,
    p99_ms        Float64,
    max_ms        Float64,
    mean_ms       Float64,
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (minute, stage, process);

-- Open interest (Databento statistics, stat_type 9): one row per published figure. CME
-- publishes a contract's open interest once a day, for the previous trading day; session_day
-- is the CME trading day in which it was published, so it is the open interest prior to that
-- day's trading.
CREATE TABLE IF NOT EXISTS ifd.open_interest
(
    session_day    Date,
    contract_key   String,
    instrument_id  UInt32,
    symbol         String,
    ts_event       DateTime64(9, 'UTC'),
    open_interest  UInt64,
    source         String,
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (contract_key, session_day, ts_event)
SETTINGS non_replicated_deduplication_window = 1000;

-- Footprint (volume at price by aggressor side) of MBO inputs, one row per (batch, contract,
-- window, price): rows are additive, the view sums them; a replayed batch rewrites its own rows.
CREATE TABLE IF NOT EXISTS ifd.footprint_parts
(
    window_start     DateTime64(3, 'UTC'),
    contract_key     String,
    instrument_id    UInt32,
    price            Float64,
    source           String,
    batch_seq        UInt64,
    bid_volume       UInt64,
    ask_volume       UInt64,
    unknown_volume   UInt64,
    trades           UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (contract_key, window_start, price, source, batch_seq)
SETTINGS non_replicated_deduplication_window = 1000;

-- price in USD price points; bid_volume = aggressor sold (hit the bid), ask_volume = aggressor
-- bought (lifted the offer); delta = ask_volume - bid_volume.
CREATE OR REPLACE VIEW ifd.footprint AS
SELECT
    contract_key,
    window_start,
    price,
    instrument_id,
    bid_volume,
    ask_volume,
    unknown_volume,
    toInt64(ask_volume) - toInt64(bid_volume) AS delta,
    trades
FROM
(
    SELECT contract_key, window_start, price,
           any(instrument_id) AS instrument_id,
           sum(p.bid_volume) AS bid_volume,
           sum(p.ask_volume) AS ask_volume,
           sum(p.unknown_volume) AS unknown_volume,
           sum(p.trades) AS trades
    FROM ifd.footprint_parts AS p FINAL
    GROUP BY contract_key, window_start, price
);

-- Icebergs detected in MBO inputs (flows/icebergs.py): one row per update; the latest
-- (version = last_ts, then state) is the iceberg's current state. side is the resting side
-- (B: a bid absorbing sellers), price USD price points, sizes contracts.
CREATE TABLE IF NOT EXISTS ifd.icebergs
(
    contract_key     String,
    instrument_id    UInt32,
    kind             LowCardinality(String),
    side             LowCardinality(String),
    price            Float64,
    order_id         UInt64,
    first_ts         DateTime64(9, 'UTC'),
    last_ts          DateTime64(9, 'UTC'),
    refills          UInt32,
    peak_size        UInt64,
    executed         UInt64,
    estimated_total  UInt64,
    state            LowCardinality(String),
    version          UInt64,
    source           String,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (contract_key, kind, side, price, first_ts, order_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Absorption events in MBO inputs (flows/absorption.py): aggressive volume absorbed at one
-- resting price level that kept refilling; outcome held (nothing traded there for 5 s) or broke
-- (the level was traded out). window_start is the tumbling window of the first fill.
CREATE TABLE IF NOT EXISTS ifd.absorption
(
    window_start     DateTime64(3, 'UTC'),
    contract_key     String,
    instrument_id    UInt32,
    side             LowCardinality(String),
    price            Float64,
    absorbed         UInt64,
    start_size       UInt64,
    fills            UInt64,
    first_ts         DateTime64(9, 'UTC'),
    last_ts          DateTime64(9, 'UTC'),
    duration_s       Float64,
    outcome          LowCardinality(String),
    source           String,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (contract_key, side, price, first_ts)
SETTINGS non_replicated_deduplication_window = 1000;

-- Iceberg memory: price levels where icebergs traded, across every session stored; a retest is
-- a later 5-minute window (starting after the zone's last iceberg update) that traded at the
-- zone's price: it held when nothing traded through it (below a bid zone, above an ask zone)
-- in that window, else it broke.
CREATE OR REPLACE VIEW ifd.iceberg_zones AS
SELECT
    contract_key, side, price, icebergs, executed, first_ts, last_ts,
    countIf(touched) AS retests,
    countIf(touched AND NOT through) AS held,
    countIf(touched AND through) AS broken
FROM
(
    SELECT
        z.contract_key AS contract_key, z.side AS side, z.price AS price,
        any(z.icebergs) AS icebergs, any(z.executed) AS executed,
        any(z.first_ts) AS first_ts, any(z.last_ts) AS last_ts,
        f.window_start AS w,
        max(f.window_start > z.last_ts AND f.price = z.price) AS touched,
        max(f.window_start > z.last_ts
            AND if(z.side = 'B', f.price < z.price, f.price > z.price)) AS through
    FROM
    (
        SELECT contract_key, side, price, count() AS icebergs, sum(executed) AS executed,
               min(first_ts) AS first_ts, max(last_ts) AS last_ts
        FROM ifd.icebergs FINAL
        GROUP BY contract_key, side, price
    ) AS z
    LEFT JOIN ifd.footprint AS f ON f.contract_key = z.contract_key
    GROUP BY contract_key, side, price, w
)
GROUP BY contract_key, side, price, icebergs, executed, first_ts, last_ts;

-- Delta and cumulative volume delta (CVD) per contract-window; CVD restarts each CME trading
-- day (the day rolls at 17:00 America/Chicago).
CREATE OR REPLACE VIEW ifd.delta_cvd AS
SELECT
    contract_key,
    window_start,
    trading_day,
    delta,
    sum(delta) OVER (PARTITION BY contract_key, trading_day ORDER BY window_start
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cvd
FROM
(
    SELECT contract_key,
           window_start,
           toDate(toTimeZone(window_start, 'America/Chicago') + INTERVAL 7 HOUR) AS trading_day,
           toInt64(ask_volume) - toInt64(bid_volume) AS delta
    FROM ifd.pressure_metrics
);

-- Volume against open interest per contract and CME trading day (the day rolls at 17:00 CT):
-- prior_open_interest is the latest figure published on or before that day; opening is 1 when
-- the day's volume exceeds it (positions must have been opened), NULL without a figure.
CREATE OR REPLACE VIEW ifd.volume_vs_oi AS
SELECT
    v.contract_key AS contract_key,
    v.trading_day AS trading_day,
    v.day_volume AS day_volume,
    if(o.contract_key = '', NULL, o.open_interest) AS prior_open_interest,
    if(o.contract_key = '' OR o.open_interest = 0, NULL, v.day_volume / o.open_interest)
        AS volume_oi_ratio,
    if(o.contract_key = '', NULL, v.day_volume > o.open_interest) AS opening
FROM
(
    SELECT contract_key,
           toDate(toTimeZone(window_start, 'America/Chicago') + INTERVAL 7 HOUR) AS trading_day,
           sum(total_volume) AS day_volume
    FROM ifd.pressure_metrics
    GROUP BY contract_key, trading_day
) AS v
ASOF LEFT JOIN
(
    SELECT contract_key, session_day, argMax(open_interest, ts_event) AS open_interest
    FROM ifd.open_interest FINAL
    GROUP BY contract_key, session_day
) AS o
ON v.contract_key = o.contract_key AND v.trading_day >= o.session_day;

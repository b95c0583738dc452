"""Write small DBN files for tests (real DBN v3 headers via databento_dbn.Metadata)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import zstandard

from connectors.dbn import RTYPE_MBP1, RTYPE_TRADES, TRADE_RTYPE_DTYPES

UNDEF = 2**63 - 1
NS = 1_000_000_000
T0 = 1_700_000_000 * NS - (1_700_000_000 * NS) % (300 * NS)  # a window boundary
PX = 10 * NS  # 10.0 USD points


def records(
    rtype: int,
    ts: list[int] | np.ndarray,
    iid: list[int] | np.ndarray,
    price: list[int] | np.ndarray,
    size: list[int] | np.ndarray,
    side: list[str] | str = "N",
    *,
    action: str = "T",
    flags: int = 128,
    bid: int = UNDEF,
    ask: int = UNDEF,
) -> np.ndarray:
    """A structured array of ``rtype`` records with header fields filled in."""
    n = len(ts)
    dtype = TRADE_RTYPE_DTYPES[rtype]
    out = np.zeros(n, dtype=dtype)
    out["length"] = dtype.itemsize // 4
    out["rtype"] = rtype
    out["publisher_id"] = 1
    out["instrument_id"] = iid
    out["ts_event"] = ts
    out["ts_recv"] = np.asarray(ts) + 1000
    out["price"] = price
    out["size"] = size
    out["action"] = action
    out["side"] = list(side) if isinstance(side, list) else side
    out["flags"] = flags
    if rtype == RTYPE_MBP1:
        out["bid_px_00"] = bid
        out["ask_px_00"] = ask
        out["bid_sz_00"] = 1
        out["ask_sz_00"] = 1
    return out


def write_dbn(
    path: Path,
    blocks: list[np.ndarray | bytes],
    *,
    schema: dbn.Schema | None = dbn.Schema.TRADES,
    symbols: dict[int, str] | None = None,
    start: int = T0,
    end: int = T0 + 86_400 * NS,
    compress: bool = True,
    version: int = 3,
) -> Path:
    """Write a DBN file (``version`` 1-3) of ``blocks`` (in order; mixed rtypes allowed)."""
    day = dt.datetime.fromtimestamp(start // NS, dt.UTC).date()
    symbols = symbols or {}
    mappings = [
        SimpleNamespace(
            raw_symbol=sym,
            intervals=[SimpleNamespace(start_date=day, end_date=day + dt.timedelta(days=1),
                                       symbol=str(iid))],
        )
        for iid, sym in symbols.items()
    ]
    header = dbn.Metadata(
        dataset="GLBX.MDP3",
        start=start,
        end=end,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=schema,
        symbols=list(symbols.values()) or ["TEST"],
        mappings=mappings,
        version=version,
    ).encode()
    body = header + b"".join(b if isinstance(b, bytes) else b.tobytes() for b in blocks)
    if compress:
        body = zstandard.ZstdCompressor().compress(body)
    path.write_bytes(body)
    return path


def trades_file(path: Path, ts, iid, price, size, side="N", **kw) -> Path:
    """Shortcut: a single-schema ``trades`` file."""
    return write_dbn(path, [records(RTYPE_TRADES, ts, iid, price, size, side)], **kw)


def call_definition(iid: int, strike: int, expiration: int, *, ts_recv: int = T0,
                    underlying: str = "NQZ6") -> bytes:
    """One DBN v3 call definition (``QNZ6 C<strike>``, strike in USD points, NQ-style)."""
    exp = dt.datetime.fromtimestamp(expiration // NS, dt.UTC)
    return bytes(dbn.InstrumentDefMsg(
        publisher_id=1, ts_event=ts_recv, ts_recv=ts_recv, instrument_id=iid,
        raw_symbol=f"QNZ6 C{strike}", raw_instrument_id=iid, group="NQ", asset="QN",
        currency="USD", exchange="XCME", security_type="OOF", cfi="OCAFPS", underlying=underlying,
        instrument_class=dbn.InstrumentClass.CALL, strike_price_currency="USD",
        strike_price=strike * NS, expiration=expiration,
        security_update_action=dbn.SecurityUpdateAction.ADD, display_factor=NS,
        min_price_increment=NS // 4, maturity_year=exp.year, maturity_month=exp.month,
        maturity_day=exp.day))

"""Instrument definitions → contracts (strike, option type, expiration, underlying).

Sources, in order of precedence (Databento "Instrument definitions" schema;
CME MDP 3.0 SecurityDefinition):

1. ``definition`` records (rtype 0x13) from the inputs, time-aware: a trade
   takes the definition of its ``instrument_id`` in force at the trade's
   ``ts_recv`` (CME reuses ids after expiry; definitions change mid-session).
2. DBN metadata symbology (``raw_symbol`` → ``instrument_id`` mappings) as a
   fallback for the *symbol* of instruments with no definition.

Trades of instruments with no definition are still aggregated and stored
(keyed by symbol or instrument_id) and counted as ``undefined_instrument``;
they are never scored or alerted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from models.records import FIXED_PRICE_SCALE, Contract, InstrumentDefinition, SpreadLeg

OPTION_CLASSES = frozenset({"C", "P"})


def format_strike(strike_price: int) -> str:
    """Render a fixed-point strike as plain USD points (``5230``, ``21512.5``, ``-2.5``)."""
    sign = "-" if strike_price < 0 else ""
    whole, frac = divmod(abs(strike_price), FIXED_PRICE_SCALE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


@functools.lru_cache(maxsize=1 << 16)
def contract_for(definition: InstrumentDefinition) -> Contract:
    """Build the window key and attributes of a defined instrument.

    Options (class ``C``/``P`` with strike and expiration) are keyed by
    ``underlying|expiration (ISO UTC)|C or P|strike|product``, where product is
    the raw symbol's root (``QN5V6`` of ``QN5V6 C20500``): a Friday weekly and
    an end-of-month option can share underlying, expiration, type and strike
    and are still different listed contracts. Every other defined instrument
    is keyed by ``F|raw_symbol``.
    """
    is_option = (
        definition.instrument_class in OPTION_CLASSES
        and definition.strike_price is not None
        and definition.expiration_ns is not None
    )
    if is_option:
        assert definition.expiration_ns is not None and definition.strike_price is not None
        expiry = datetime.fromtimestamp(definition.expiration_ns / 1e9, tz=UTC)
        product = definition.raw_symbol.split(" ", 1)[0]
        key = (
            f"{definition.underlying}|{expiry:%Y-%m-%dT%H:%M:%SZ}|"
            f"{definition.instrument_class}|{format_strike(definition.strike_price)}|{product}"
        )
    else:
        key = f"F|{definition.raw_symbol}"
    return Contract(
        key=key,
        instrument_id=definition.instrument_id,
        symbol=definition.raw_symbol,
        underlying=definition.underlying,
        expiration_ns=definition.expiration_ns,
        strike_price=definition.strike_price if is_option else None,
        option_type=definition.instrument_class,
        defined=True,
        multiplier=definition.multiplier,
    )


def add_version(history: list[InstrumentDefinition], definition: InstrumentDefinition) -> bool:
    """Insert ``definition`` into an id's ``ts_recv``-sorted history; False if already known.

    Another leg record of a spread definition already held (same id, ``ts_recv`` and symbol:
    Databento sends one record per leg) is merged into it instead of becoming a version.
    """
    if definition in history:
        return False
    for i, known in enumerate(history):
        if known.same_message(definition):
            merged = known.with_legs_of(definition)
            if merged == known:
                return False
            history[i] = merged
            return True
    history.append(definition)
    history.sort(key=lambda d: d.ts_recv)
    return True


def _add_version(versions: dict[int, list[InstrumentDefinition]], definition: InstrumentDefinition) -> bool:
    return add_version(versions.setdefault(definition.instrument_id, []), definition)


def version_index(history_ts: np.ndarray, ts_recv: np.ndarray) -> np.ndarray:
    """Index of the definition in force at each ``ts_recv`` (int64[n]).

    The definition in force is the latest with ``ts_recv <= trade.ts_recv``;
    a trade received before the first known definition takes the first one
    (daily definition files are stamped at 00:00 UTC while the Globex session
    they describe opened at 17:00 CT the evening before).
    """
    return np.maximum(np.searchsorted(history_ts, ts_recv, side="right") - 1, 0)


class InstrumentCatalog:
    """instrument_id → :class:`~models.records.Contract`, time-aware.

    CME reuses instrument ids after expiry, and a definition can change
    mid-session, so every definition of an id is kept, ordered by
    ``ts_recv``; a trade resolves to the definition in force at its own
    ``ts_recv`` (:func:`version_index`), never to a later one.

    Parameters
    ----------
    definitions : iterable of InstrumentDefinition
        Initial definitions (e.g. from definition files in ``IFD_SOURCE``).
    symbols : dict[int, str]
        Metadata symbology fallback, instrument_id → raw symbol.
    """

    def __init__(
        self,
        definitions: Iterable[InstrumentDefinition] = (),
        symbols: dict[int, str] | None = None,
    ) -> None:
        self._versions: dict[int, list[InstrumentDefinition]] = {}
        self._symbols: dict[int, str] = dict(symbols or {})
        self._cache: dict[int, Contract] = {}
        self._with_legs: set[int] = set()
        self._timelines: dict[int, tuple[int, list[InstrumentDefinition] | None, int,
                                         np.ndarray, list[Contract]]] = {}
        self.update(definitions)

    def __len__(self) -> int:
        return len(self._versions)

    def __contains__(self, instrument_id: int) -> bool:
        return instrument_id in self._versions or instrument_id in self._symbols

    def update(self, definitions: Iterable[InstrumentDefinition]) -> None:
        """Add definitions to each id's history (identical repeats are ignored)."""
        for definition in definitions:
            if definition.legs:
                self._with_legs.add(definition.instrument_id)
            if _add_version(self._versions, definition):
                self._cache.pop(definition.instrument_id, None)
                self._timelines.pop(definition.instrument_id, None)

    def add_symbols(self, symbols: dict[int, str]) -> None:
        """Add metadata symbology fallbacks (existing entries win)."""
        for instrument_id, symbol in symbols.items():
            if self._symbols.setdefault(instrument_id, symbol) == symbol:
                self._cache.pop(instrument_id, None)
                self._timelines.pop(instrument_id, None)

    def legs(self, instrument_ids: Iterable[int], own: dict[int, list[InstrumentDefinition]] | None = None,
             ) -> dict[int, tuple[SpreadLeg, ...]]:
        """Spread instruments among ``instrument_ids`` → their legs (latest definition with legs).

        ``own`` are a stream's in-band definitions by id. Ids that are not spreads, or whose
        definitions list no legs (DBN v1/v2), are left out.
        """
        out: dict[int, tuple[SpreadLeg, ...]] = {}
        own = own or {}
        spreads = self._with_legs | {iid for iid, v in own.items() if any(d.legs for d in v)}
        if not spreads:
            return out
        for iid in spreads.intersection(instrument_ids):
            versions = [*self._versions.get(iid, ()), *own.get(iid, ())]
            with_legs = [d for d in versions if d.legs]
            if with_legs:
                out[iid] = max(with_legs, key=lambda d: d.ts_recv).legs
        return out

    def history(self, instrument_id: int) -> list[InstrumentDefinition]:
        """Every known definition of ``instrument_id``, by ``ts_recv`` (may be empty)."""
        return self._versions.get(instrument_id, [])

    def timeline(self, instrument_id: int, own: list[InstrumentDefinition] | None = None,
                 ) -> tuple[np.ndarray, list[Contract]]:
        """Return the id's contract over time: ``(ts_recv int64[k], k contracts)``, k ≥ 1.

        Merges the catalog's history with ``own`` (a stream's in-band
        definitions, ``ts_recv``-sorted, append-only) and collapses runs of
        versions that give the same contract (a daily definition file repeats
        every instrument), keeping each run's first ``ts_recv``;
        :func:`version_index` over it picks the same contract as over the full
        history. An id with no definition gives its :meth:`undefined` contract.
        Cached per id until the catalog's history or ``own`` grows (both only
        grow; the cache holds ``own`` itself, so identity is never confused).
        """
        history = self._versions.get(instrument_id, [])
        n_own = len(own) if own else 0
        hit = self._timelines.get(instrument_id)
        if hit is not None and hit[0] == len(history) and hit[1] is own and hit[2] == n_own:
            return hit[3], hit[4]
        if n_own:
            assert own is not None
            history = sorted({*history, *own}, key=lambda d: d.ts_recv)
        if not history:
            ts, contracts = np.zeros(1, dtype=np.int64), [self.resolve(instrument_id)]
        else:
            starts: list[int] = []
            contracts = []
            for definition in history:
                contract = contract_for(definition)
                if not contracts or contract != contracts[-1]:
                    starts.append(definition.ts_recv)
                    contracts.append(contract)
            ts = np.array(starts, dtype=np.int64)
        self._timelines[instrument_id] = (len(self._versions.get(instrument_id, [])), own, n_own,
                                          ts, contracts)
        return ts, contracts

    def undefined(self, instrument_id: int) -> Contract:
        """Return the contract of an id with no definition (keyed by symbology or id)."""
        symbol = self._symbols.get(instrument_id, "")
        return Contract(
            key=f"SYM|{symbol}" if symbol else f"ID|{instrument_id}",
            instrument_id=instrument_id,
            symbol=symbol or str(instrument_id),
            underlying="",
            expiration_ns=None,
            strike_price=None,
            option_type="",
            defined=False,
        )

    def resolve(self, instrument_id: int) -> Contract:
        """Return the contract of ``instrument_id`` under its latest definition (``defined=False`` if none).

        Time-unaware: use :func:`resolve_trades` for trades.
        """
        contract = self._cache.get(instrument_id)
        if contract is not None:
            return contract
        history = self._versions.get(instrument_id)
        contract = contract_for(history[-1]) if history else self.undefined(instrument_id)
        self._cache[instrument_id] = contract
        return contract


def resolve_trades(
    instrument_id: np.ndarray,
    ts_recv: np.ndarray,
    catalog: InstrumentCatalog,
    inline: dict[int, list[InstrumentDefinition]] | None = None,
) -> tuple[np.ndarray, list[Contract]]:
    """Resolve each trade to the contract defined for its instrument at its ``ts_recv``.

    Parameters
    ----------
    instrument_id : uint32[n]
    ts_recv : int64[n]
        Databento receive time of each trade, ns UTC.
    catalog : InstrumentCatalog
        Definitions shared by all inputs.
    inline : dict | None
        The input's own in-stream definitions (id → ``ts_recv``-sorted list),
        merged with the catalog's history.

    Returns
    -------
    (int64[n], list[Contract])
        Per trade, an index into the list of distinct contracts of the batch.
        Python runs once per distinct instrument, numpy per trade.
    """
    contracts: list[Contract] = []
    index_of: dict[Contract, int] = {}
    if len(instrument_id) == 0:
        return np.zeros(0, dtype=np.int64), contracts
    ids, which = np.unique(instrument_id, return_inverse=True)

    def index(contract: Contract) -> int:
        found = index_of.get(contract)
        if found is None:
            found = index_of[contract] = len(contracts)
            contracts.append(contract)
        return found

    per_id = np.zeros(len(ids), dtype=np.int64)
    multi: list[tuple[int, np.ndarray, list[Contract]]] = []
    for pos, iid in enumerate(ids.tolist()):
        starts, versions = catalog.timeline(iid, inline.get(iid) if inline else None)
        if len(versions) == 1:
            per_id[pos] = index(versions[0])
        else:
            multi.append((pos, starts, versions))
    group = per_id[which]
    if multi:  # ids whose contract changed over time: pick the version per trade
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(ids) + 1))
        for pos, starts, versions in multi:
            rows = order[bounds[pos]:bounds[pos + 1]]
            mapping = np.array([index(contract) for contract in versions], dtype=np.int64)
            group[rows] = mapping[version_index(starts, ts_recv[rows])]
    return group, contracts

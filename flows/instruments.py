"""Instrument definitions → contracts (strike, option type, expiration, underlying).

Sources, in order of precedence (Databento "Instrument definitions" schema;
CME MDP 3.0 SecurityDefinition):

1. ``definition`` records (rtype 0x13) from the inputs; for one
   ``instrument_id`` the definition with the latest ``ts_recv`` wins.
2. DBN metadata symbology (``raw_symbol`` → ``instrument_id`` mappings) as a
   fallback for the *symbol* of instruments with no definition.

Trades of instruments with no definition are still aggregated (keyed by
symbol or instrument_id) and counted as ``undefined_instrument``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from models.records import FIXED_PRICE_SCALE, Contract, InstrumentDefinition

OPTION_CLASSES = frozenset({"C", "P"})


def format_strike(strike_price: int) -> str:
    """Render a fixed-point strike as plain USD points (``5230``, ``21512.5``, ``-2.5``)."""
    sign = "-" if strike_price < 0 else ""
    whole, frac = divmod(abs(strike_price), FIXED_PRICE_SCALE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


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
    )


class InstrumentCatalog:
    """instrument_id → :class:`~models.records.Contract`, fed by definitions.

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
        self._defs: dict[int, InstrumentDefinition] = {}
        self._symbols: dict[int, str] = dict(symbols or {})
        self._cache: dict[int, Contract] = {}
        self.update(definitions)

    def __len__(self) -> int:
        return len(self._defs)

    def update(self, definitions: Iterable[InstrumentDefinition]) -> None:
        """Add definitions; a later ``ts_recv`` replaces an earlier one."""
        for definition in definitions:
            known = self._defs.get(definition.instrument_id)
            if known is None or definition.ts_recv >= known.ts_recv:
                self._defs[definition.instrument_id] = definition
                self._cache.pop(definition.instrument_id, None)

    def add_symbols(self, symbols: dict[int, str]) -> None:
        """Add metadata symbology fallbacks (existing entries win)."""
        for instrument_id, symbol in symbols.items():
            if self._symbols.setdefault(instrument_id, symbol) == symbol:
                self._cache.pop(instrument_id, None)

    def resolve(self, instrument_id: int) -> Contract:
        """Return the contract of ``instrument_id`` (``defined=False`` when no definition)."""
        contract = self._cache.get(instrument_id)
        if contract is not None:
            return contract
        definition = self._defs.get(instrument_id)
        if definition is not None:
            contract = contract_for(definition)
        else:
            symbol = self._symbols.get(instrument_id, "")
            contract = Contract(
                key=f"SYM|{symbol}" if symbol else f"ID|{instrument_id}",
                instrument_id=instrument_id,
                symbol=symbol or str(instrument_id),
                underlying="",
                expiration_ns=None,
                strike_price=None,
                option_type="",
                defined=False,
            )
        self._cache[instrument_id] = contract
        return contract

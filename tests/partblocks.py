"""Test-only: build a columnar :class:`PartBlock` from row objects (the inverse of ``PartBlock.to_parts``)."""

from __future__ import annotations

import numpy as np

from models.records import PART_COLUMNS, UNDEF_PRICE, PartBlock, WindowPart


def block_of(parts: list[WindowPart], window_ns: int, key: str = "") -> PartBlock:
    """Columnar block of ``parts`` (one window start if they share one, else None)."""
    values: dict[str, list] = {name: [] for name in PART_COLUMNS}
    for p in parts:
        for name in PART_COLUMNS:
            if name == "contract_key":
                values[name].append(p.key)
            elif name == "expiration_ns":
                values[name].append(-1 if p.expiration_ns is None else p.expiration_ns)
            elif name == "strike_price":
                values[name].append(UNDEF_PRICE if p.strike_price is None else p.strike_price)
            else:
                values[name].append(getattr(p, name))
    cols = {name: np.asarray(v, dtype=PART_COLUMNS[name]) for name, v in values.items()}
    starts = {p.window_start_ns for p in parts}
    return PartBlock(key, starts.pop() if len(starts) == 1 else None, window_ns, cols)

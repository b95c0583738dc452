"""Trade selection per (record type, instrument, time range): which trade records count.

Placeholder interface (filled in by the input-integrity work): see
:class:`TradeSelection`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TradeSelection:
    """Decides which trade records of one input count.

    ``counts(rtype, instrument_id, ts_event)`` returns a bool mask: True where
    the trade record counts, False where the same trade is carried by a
    richer record type (counted as ``duplicate_schema_trades``).
    """

    rtype: int | None

    def counts(self, rtype: int, instrument_id: np.ndarray, ts_event: np.ndarray) -> np.ndarray:
        """Bool mask over the rows: True = this trade record counts."""
        return np.full(len(instrument_id), rtype == self.rtype, dtype=bool)

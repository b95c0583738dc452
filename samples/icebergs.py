"""Labelled MBO tape with native and synthetic icebergs inside a consistent simulated book.

:func:`generate_iceberg_tape` simulates one futures instrument's order book event by event and
writes the DBN v3 ``mbo`` records it would publish, plus ``labels.jsonl`` (the ground truth):

- **background**: limit orders of 1-10 lots added 1-6 ticks (0.25 points) from the touch,
  cancelled at random, and marketable orders of 1-20 lots that trade the best opposite level in
  time priority (one ``T`` for the aggressor, then per resting order an ``F`` and the ``C`` or
  ``M`` that updates the book, as Databento publishes CME MDP 3.0: all with the same
  ``ts_event``, ``F_LAST`` on the event's last record). A level traded out moves the touch.
  Ordinary traders also re-join a price just traded out within 1-80 ms (:data:`JOIN_SHARE` of
  the levels traded out: queue joining, the null flow a synthetic detector must not take).
- **native icebergs**: one order id showing ``display`` lots of a larger hidden total at the
  touch; each time its shown part trades, the same id is modified back to ``display`` (or what
  is left) at the same price, until the total is done (CME-managed display quantity).
- **synthetic icebergs**: a trader posting ``display``-lot tranches at one price; each time a
  tranche trades away *and the level is empty*, a new order id appears at that price 1-50 ms
  later, for 3-8 tranches (a client-side algorithm).

``labels.jsonl`` rows: ``kind`` (native/synthetic), ``side`` (resting side B/A), ``price``
(USD points), ``order_id`` (native; 0 synthetic), ``first_ts``/``last_ts`` (ns, from the
iceberg's first order to its last fill), ``display``, ``total`` (contracts it traded). Units:
prices int64 fixed-point 1e-9, sizes contracts, ns since epoch UTC. Deterministic per seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import databento_dbn as dbn
import numpy as np

from models.records import F_LAST

TICK = 250_000_000  # 0.25 index points, fixed-point 1e-9
INSTRUMENT_ID = 4242
_DTYPE = np.dtype(dbn.MBOMsg._dtypes)
JOIN_SHARE = 0.3
"""Share of background levels traded out that an ordinary trader re-joins within 1-80 ms."""


@dataclass
class _Order:
    oid: int
    side: bytes
    price: int
    size: int
    display: int = 0  # native icebergs: shown size
    hidden: int = 0  # native icebergs: contracts not yet shown
    label: int = -1


@dataclass
class _Book:
    levels: dict[tuple[bytes, int], list[_Order]] = field(default_factory=dict)
    orders: dict[int, _Order] = field(default_factory=dict)

    def best(self, side: bytes) -> int | None:
        prices = [p for (s, p), q in self.levels.items() if s == side and q]
        if not prices:
            return None
        return max(prices) if side == b"B" else min(prices)

    def add(self, order: _Order) -> None:
        self.orders[order.oid] = order
        self.levels.setdefault((order.side, order.price), []).append(order)

    def remove(self, order: _Order) -> None:
        del self.orders[order.oid]
        self.levels[(order.side, order.price)].remove(order)


@dataclass
class IcebergTape:
    """Paths written by :func:`generate_iceberg_tape`."""

    mbo_path: Path
    labels_path: Path
    records: int
    labels: int


def generate_iceberg_tape(out_dir: Path, *, seed: int = 1, events: int = 60_000,
                          icebergs: int = 30, start_ns: int = 1_703_548_800 * 10**9,
                          ) -> IcebergTape:
    """Simulate ``events`` book events with ``icebergs`` injected icebergs (half native).

    Returns the written :class:`IcebergTape`; raises ``ValueError`` for non-positive sizes.
    """
    if events < 1 or icebergs < 0:
        msg = "events must be >= 1 and icebergs >= 0"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple] = []  # (ts, action, side, price, size, order_id, flags)
    labels: list[dict] = []
    book = _Book()
    next_oid = [1_000_000]
    ts = start_ns
    mid = 5000 * 10**9

    def oid() -> int:
        next_oid[0] += 1
        return next_oid[0]

    def emit(t: int, action: bytes, side: bytes, price: int, size: int, order_id: int) -> None:
        rows.append((t, action, side, price, size, order_id, 0))

    def close_event() -> None:
        t, a, s, p, q, o, _f = rows[-1]
        rows[-1] = (t, a, s, p, q, o, F_LAST)

    def add(t: int, order: _Order) -> None:
        book.add(order)
        emit(t, b"A", order.side, order.price, order.size, order.oid)
        close_event()

    for side, sign in ((b"B", -1), (b"A", 1)):  # an initial book
        for k in range(1, 6):
            for _ in range(3):
                add(ts, _Order(oid(), side, mid + sign * k * TICK, int(rng.integers(1, 11))))
    synthetic: list[dict] = []  # active synthetic traders: side, price, display, left, label
    pending: list[tuple[int, dict]] = []  # (ts, trader) re-posts due
    plan = np.sort(rng.choice(np.arange(events // 10, events - events // 10), size=icebergs,
                              replace=False)) if icebergs else np.array([], dtype=np.int64)
    kinds = rng.permutation(["native"] * (icebergs // 2) + ["synthetic"] * (icebergs - icebergs // 2))
    planned = dict(zip(plan.tolist(), kinds.tolist(), strict=True))
    for step in range(events):
        ts += int(rng.exponential(20_000_000)) + 1
        while pending and pending[0][0] <= ts:  # re-posts and queue joiners come first
            due, trader = pending.pop(0)
            level = book.levels.get((trader["side"], trader["price"]), [])
            if trader.get("label") is None:  # an ordinary trader joins the price just traded out
                add(due, _Order(oid(), trader["side"], trader["price"], int(rng.integers(1, 11))))
            elif trader["left"] > 0 and not level:
                size = min(trader["display"], trader["left"])
                trader["left"] -= size
                order = _Order(oid(), trader["side"], trader["price"], size, label=trader["label"])
                add(due, order)
        kind = planned.get(step)
        if kind is not None:
            side = b"B" if rng.random() < 0.5 else b"A"
            touch = book.best(side) or (mid - TICK if side == b"B" else mid + TICK)
            display = int(rng.integers(1, 6))
            total = int(rng.integers(6, 16)) * display
            label = len(labels)
            labels.append(dict(kind=kind, side=side.decode(), price=touch / 1e9, order_id=0,
                               first_ts=ts, last_ts=ts, display=display, total=0))
            if kind == "native":
                order = _Order(oid(), side, touch, display, display=display,
                               hidden=total - display, label=label)
                labels[label]["order_id"] = order.oid
                add(ts, order)
            else:
                synthetic.append(dict(side=side, price=touch, display=display,
                                      left=total - display, label=label))
                add(ts, _Order(oid(), side, touch, display, label=label))
            continue
        u = rng.random()
        if u < 0.45:  # a limit order 1-6 ticks from the touch (or joining a level just emptied)
            side = b"B" if rng.random() < 0.5 else b"A"
            touch = book.best(side) or (mid - TICK if side == b"B" else mid + TICK)
            away = int(rng.integers(0, 6)) * TICK
            price = touch - away if side == b"B" else touch + away
            add(ts, _Order(oid(), side, price, int(rng.integers(1, 11))))
        elif u < 0.80:  # a cancel of a plain resting order
            plain = [o for o in book.orders.values() if o.label < 0]
            if plain:
                order = plain[int(rng.integers(0, len(plain)))]
                book.remove(order)
                emit(ts, b"C", order.side, order.price, order.size, order.oid)
                close_event()
        else:  # a marketable order trades the best opposite level
            aggressor = b"B" if rng.random() < 0.5 else b"A"
            resting = b"A" if aggressor == b"B" else b"B"
            best = book.best(resting)
            if best is None:
                continue
            price = best
            want = int(rng.integers(1, 21))
            queue = list(book.levels[(resting, price)])
            fills = []
            for order in queue:
                if want <= 0:
                    break
                take = min(want, order.size)
                fills.append((order, take))
                want -= take
            traded = sum(q for _, q in fills)
            emit(ts, b"T", aggressor, price, traded, 0)
            for order, take in fills:
                emit(ts, b"F", resting, price, take, order.oid)
                if order.label >= 0:
                    lab = labels[order.label]
                    lab["total"] += take
                    lab["last_ts"] = ts
                if take < order.size:
                    order.size -= take
                    emit(ts, b"M", resting, price, order.size, order.oid)
                elif order.hidden > 0:  # native iceberg: shown again at the same price
                    order.size = min(order.display, order.hidden)
                    order.hidden -= order.size
                    emit(ts, b"M", resting, price, order.size, order.oid)
                else:
                    book.remove(order)
                    emit(ts, b"C", resting, price, take, order.oid)
                    owner = next((x for x in synthetic if x["label"] == order.label), {})
                    if owner:
                        pending.append((ts + int(rng.integers(1, 51)) * 1_000_000, owner))
                    elif not book.levels[(resting, price)] and rng.random() < JOIN_SHARE:
                        pending.append((ts + int(rng.integers(1, 81)) * 1_000_000,
                                        dict(side=resting, price=price)))
                    pending.sort(key=lambda x: x[0])
            close_event()
    rec = np.zeros(len(rows), dtype=_DTYPE)
    cols = list(zip(*rows, strict=True))
    rec["length"], rec["rtype"] = _DTYPE.itemsize // 4, int(dbn.RType.MBO)
    rec["publisher_id"], rec["instrument_id"] = 1, INSTRUMENT_ID
    rec["ts_event"] = cols[0]
    rec["ts_recv"] = np.asarray(cols[0], dtype=np.int64) + 5_000
    rec["action"], rec["side"] = cols[1], cols[2]
    rec["price"], rec["size"], rec["order_id"], rec["flags"] = cols[3], cols[4], cols[5], cols[6]
    rec["sequence"] = np.arange(len(rec)) + 1
    header = dbn.Metadata(dataset="GLBX.MDP3", start=start_ns, end=int(ts) + 1,
                          stype_in=dbn.SType("raw_symbol"), stype_out=dbn.SType("instrument_id"),
                          schema=dbn.Schema("mbo"), symbols=["ICEH4"], mappings=[],
                          version=3).encode()
    mbo = out_dir / f"icebergs-s{seed}.mbo.dbn"
    mbo.write_bytes(header + rec.tobytes())
    labels_path = out_dir / f"icebergs-s{seed}.labels.jsonl"
    labels_path.write_text("".join(json.dumps(x) + "\n" for x in labels), encoding="utf-8")
    return IcebergTape(mbo, labels_path, len(rec), len(labels))

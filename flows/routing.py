"""Which bytewax worker a stateful key lands on, and keys chosen to land on a given worker.

bytewax 0.21 routes every item of a keyed stateful step (``stateful_map``, windows,
``stateful_batch``, a fixed-partition sink) to one worker: the Rust ``DefaultHasher``
(SipHash-1-3 with zero keys) of the key string, as Rust's ``Hash for str`` feeds it (its UTF-8
bytes, then one ``0xFF`` byte), modulo the number of workers (bytewax ``StateKey::route``; timely
``Exchange``). :func:`worker_of` computes the same number; ``tests/test_routing.py`` checks it
against a real ``-w 2`` / ``-w 3`` run, so a bytewax upgrade that changes routing fails there.

Partitions (of fixed-partition sources and sinks) are not hashed: bytewax gives each one to the
least-loaded worker among those that list it, in key order (its ``assign_primaries``), so a sink
with one partition that every worker lists lives on worker 0 (:data:`SINK_WORKER`).

The flow uses it to keep heavy items from crossing processes: with one embedded store, the
window shards and the scoring step are keyed to the worker that holds the store's sink
partition, so closed windows (twice the size of the parts that make them) and scored signals are
handed over in memory, never pickled. Only the per-batch parts of other processes' files cross.
Routing only moves work between workers; no result depends on it.
"""

from __future__ import annotations

SINK_WORKER = 0
"""The worker of a one-partition sink that every worker lists (the embedded store's)."""

_MASK = (1 << 64) - 1


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 of ``data`` with a zero key (Aumasson & Bernstein, 2012; Rust ``DefaultHasher``)."""
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573
    n = len(data)
    tail = n - n % 8
    for i in range(0, tail, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[tail:], "little")
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """Index (0 … ``workers`` - 1) of the bytewax worker that owns stateful key ``key``."""
    return siphash13(key.encode() + b"\xff") % max(1, workers)


def key_on_worker(base: str, worker: int, workers: int) -> str:
    """Return ``base`` if bytewax routes it to ``worker``, else the first ``base~n`` that it does.

    Raises
    ------
    ValueError
        ``worker`` is not in ``0 … workers - 1``.
    """
    if not 0 <= worker < max(1, workers):
        msg = f"worker {worker} is not one of the run's {workers} worker(s)"
        raise ValueError(msg)
    if worker_of(base, workers) == worker:
        return base
    n = 1
    while worker_of(f"{base}~{n}", workers) != worker:
        n += 1
    return f"{base}~{n}"

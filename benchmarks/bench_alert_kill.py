"""Alert outbox under ``kill -9``: alerts missing and duplicated over many kills.

Run::

    .venv/bin/python benchmarks/bench_alert_kill.py                          # 20 kills, 20 signals each
    .venv/bin/python benchmarks/bench_alert_kill.py --trials 40 --signals 30 --seed 7

Each trial starts a dispatcher process that accepts ``--signals`` signals into
a fresh outbox and sends them to a local webhook answering every POST after
0.1 s. The process gets SIGKILL once the webhook has received ``k`` posts,
with ``k`` drawn uniformly from [1, N − 1] (``--seed``). A new dispatcher then
drains the same outbox in this process. Per trial it prints the POSTs each
alert got: *missing* alerts got none, *duplicated* counts the extra POSTs.
The webhook counts a POST when it arrives, so every kill lands while that
POST is unanswered: the outbox re-sends it, one duplicate per kill, the
most it allows. Figures are printed, never asserted. :func:`run_kill_trials` returns them for other
benchmarks.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sinks.test_alert_outbox import (  # noqa: E402
    SlowWebhook,
    drain,
    kill_hard,
    post_key,
    signal_key,
    spawn_dispatcher,
)
from tests.sinks.test_alerts import make_signal  # noqa: E402

DELAY_S = 0.1
"""Webhook answer time per POST, seconds."""


def run_kill_trials(n_trials: int, n_signals: int, seed: int) -> dict:
    """Kill a delivering dispatcher ``n_trials`` times; count alerts missing and duplicated.

    Parameters
    ----------
    n_trials : int
        Kills (one fresh outbox and dispatcher process each).
    n_signals : int
        Signals accepted per trial (≥ 2).
    seed : int
        Seed of the kill points (posts received before the kill, uniform in
        [1, n_signals − 1]).

    Returns
    -------
    dict
        ``trials``: one dict per trial (``kill_at``, ``posts_at_kill``,
        ``requeued``, ``resent_in_flight``, ``missing``, ``duplicated``,
        ``elapsed_s``); totals ``signals``, ``missing``, ``duplicated``;
        ``elapsed_s`` of the whole run.

    Raises
    ------
    ValueError
        ``n_signals`` < 2 or ``n_trials`` < 1.
    """
    if n_signals < 2 or n_trials < 1:
        msg = "need n_trials >= 1 and n_signals >= 2"
        raise ValueError(msg)
    rng = random.Random(seed)
    expected = [signal_key(s.contract_key, s.window_start)
                for s in (make_signal(minute=m) for m in range(n_signals))]
    trials = []
    started = time.perf_counter()
    for _ in range(n_trials):
        kill_at = rng.randint(1, n_signals - 1)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, SlowWebhook(delay_s=DELAY_S) as hook:
            outbox, jsonl = Path(tmp) / "alerts.outbox.sqlite", Path(tmp) / "alerts.jsonl"
            proc = spawn_dispatcher(hook.url, outbox, jsonl, n_signals)
            hook.wait_for(kill_at, timeout_s=120.0, proc=proc)
            kill_hard(proc)
            posts_at_kill = len(hook.posts)
            stats = drain(hook.url, outbox, jsonl)
            counts = Counter(post_key(p) for p in hook.posts)
        trials.append({
            "kill_at": kill_at,
            "posts_at_kill": posts_at_kill,
            "requeued": stats["requeued"],
            "resent_in_flight": stats["resent_in_flight"],
            "missing": sum(1 for key in expected if counts[key] == 0),
            "duplicated": sum(max(counts[key] - 1, 0) for key in expected),
            "elapsed_s": time.perf_counter() - t0,
        })
    return {
        "trials": trials,
        "signals": n_trials * n_signals,
        "missing": sum(t["missing"] for t in trials),
        "duplicated": sum(t["duplicated"] for t in trials),
        "elapsed_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--signals", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    result = run_kill_trials(args.trials, args.signals, args.seed)
    print(f"{args.trials} kills of a dispatcher sending {args.signals} alerts each "  # noqa: T201
          f"({DELAY_S} s per POST), seed {args.seed}")
    print(f"{'trial':>5} {'kill at':>7} {'posts':>5} {'requeued':>8} {'in flight':>9} "  # noqa: T201
          f"{'missing':>7} {'dup':>3} {'s':>5}")
    for i, t in enumerate(result["trials"], start=1):
        print(f"{i:>5} {t['kill_at']:>7} {t['posts_at_kill']:>5} {t['requeued']:>8} "  # noqa: T201
              f"{t['resent_in_flight']:>9} {t['missing']:>7} {t['duplicated']:>3} {t['elapsed_s']:>5.1f}")
    print(f"total: {result['signals']} alerts, {result['missing']} missing, "  # noqa: T201
          f"{result['duplicated']} duplicated (≤ {args.trials} allowed: one in flight per kill); "
          f"{result['elapsed_s']:.1f} s")


if __name__ == "__main__":
    main()

"""Synthetic NQ.OPT data: the bundled sample, labelled days and seeded sessions.

Nothing in the production flow imports these generators except through
:func:`ensure_sample` (the default input when ``IFD_SOURCE`` is unset).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_DAYS = 6
"""Bundled sample: 5 days to build baselines + 1 scored day with injected flow."""


def ensure_sample(data_dir: Path) -> list[str]:
    """Generate (once) and return the bundled NQ.OPT sample: six labelled trading days.

    Parameters
    ----------
    data_dir : Path
        The run's data directory; the sample lives in ``data_dir / "sample"``
        (definition + tbbo DBN v3 zstd file per day, and ``labels.jsonl``).

    Returns
    -------
    list[str]
        The sample's DBN paths, sorted (2 per trading day). A partial or
        missing sample is regenerated (seeded: the same bytes every time).
    """
    from samples.labelled import generate_labelled_days

    out = data_dir / "sample"
    labels = out / "labels.jsonl"
    files = sorted(out.glob("nq-opt-glbx-mdp3-*.dbn.zst"))
    if not labels.is_file() or len(files) != 2 * SAMPLE_DAYS:
        log.info("generating the NQ.OPT sample (%d trading days) in %s", SAMPLE_DAYS, out)
        generate_labelled_days(out, n_days=SAMPLE_DAYS, first_scored_day=SAMPLE_DAYS - 1)
        files = sorted(out.glob("nq-opt-glbx-mdp3-*.dbn.zst"))
    return [str(f) for f in files]

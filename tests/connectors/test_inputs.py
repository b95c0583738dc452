from __future__ import annotations

import pytest

from connectors.dbn import RTYPE_MBO, RTYPE_MBP1, RTYPE_TRADES
from connectors.inputs import plan_inputs
from models.errors import SourceError


def test_glob_matching_nothing_names_the_pattern(tmp_path):
    with pytest.raises(SourceError, match=r"nothing-\*\.dbn"):
        plan_inputs([str(tmp_path / "nothing-*.dbn")])


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(SourceError, match="gone.dbn.zst"):
        plan_inputs([str(tmp_path / "gone.dbn.zst")])


def test_only_definitions_is_an_error(real_dir):
    with pytest.raises(SourceError, match="only definition files"):
        plan_inputs([str(real_dir / "esu4-glbx-mdp3.definition.dbn.zst")])


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name


def test_auto_picks_richest_schema_among_overlapping_inputs(real_dir):
    import databento as db

    trades = real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"
    plan = plan_inputs([str(trades),
                        str(real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"),
                        str(real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst")])
    chosen = {_name(d.path): d.trade_rtype for d in plan.data}
    assert chosen == {
        "esu4-glbx-mdp3-20240701.trades.dbn.zst": RTYPE_TRADES,
        "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst": RTYPE_MBP1,
        "esh4-glbx-mdp3-20231225.mbo.dbn.zst": RTYPE_MBO,  # other contract: not a duplicate
    }
    # every trade of the trades file is carried by the mbp-1 file (same instrument and time)
    df = db.DBNStore.from_file(trades).to_df(map_symbols=False, pretty_ts=False)
    sel = next(d.selection for d in plan.data if d.path == str(trades))
    mask = sel.counts(RTYPE_TRADES, df["instrument_id"].to_numpy(), df.index.to_numpy().astype("int64"))
    assert len(mask) == len(df) > 0 and not mask.any()


def test_explicit_schema_applies_everywhere(real_dir):
    plan = plan_inputs([str(real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"),
                        str(real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst")], "mbo")
    assert [d.selection.counted for d in plan.data] == [frozenset({RTYPE_MBO})] * 2


def test_inputs_are_identified_by_content_not_name(tmp_path, real_dir):
    src = real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"
    (tmp_path / "a").mkdir()
    copy = tmp_path / "a" / "renamed.trades.dbn.zst"
    copy.write_bytes(src.read_bytes())
    alias = real_dir / ".." / "real" / src.name
    plan = plan_inputs([str(src), str(copy), str(alias)])
    assert [d.path for d in plan.data] == [str(src)]
    assert plan.data[0].source_id.startswith("b2:")
    assert plan.duplicates == [(str(src), str(copy)), (str(src), str(alias))]


def test_same_name_different_content_are_two_inputs(tmp_path, real_dir):
    src = real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"
    other = real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
    for d, f in (("a", src), ("b", other)):
        (tmp_path / d).mkdir()
        (tmp_path / d / "same.dbn.zst").write_bytes(f.read_bytes())
    plan = plan_inputs([str(tmp_path / "a" / "same.dbn.zst"), str(tmp_path / "b" / "same.dbn.zst")])
    assert len({d.source_id for d in plan.data}) == 2


def test_consecutive_day_files_form_one_ordered_partition_overlapping_files_do_not(tmp_path, real_dir):
    from datetime import date

    from connectors.inputs import partition_inputs
    from samples.generator import generate_session

    for day in (date(2026, 11, 19), date(2026, 11, 17), date(2026, 11, 18)):
        generate_session(tmp_path, session_date=day, n_trades=100)
    plan = plan_inputs([str(tmp_path / "*.tbbo.dbn.zst"), str(tmp_path / "*.definition.dbn.zst"),
                        str(real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"),
                        str(real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst")])
    groups = [[_name(d.path) for d in g] for g in partition_inputs(plan.data)]
    assert sorted(groups) == sorted([
        ["nq-opt-glbx-mdp3-20261117.tbbo.dbn.zst", "nq-opt-glbx-mdp3-20261118.tbbo.dbn.zst",
         "nq-opt-glbx-mdp3-20261119.tbbo.dbn.zst"],
        ["esu4-glbx-mdp3-20240701.trades.dbn.zst"],
        ["esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"],
    ])

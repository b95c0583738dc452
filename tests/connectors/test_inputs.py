from __future__ import annotations

import pytest

from connectors.dbn import RTYPE_MBO, RTYPE_MBP1
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


def test_auto_picks_richest_schema_among_overlapping_inputs(real_dir):
    plan = plan_inputs([str(real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"),
                        str(real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"),
                        str(real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst")])
    chosen = {d.source_id: d.trade_rtype for d in plan.data}
    assert chosen == {
        "esu4-glbx-mdp3-20240701.trades.dbn.zst": None,  # duplicate of the mbp-1 trades
        "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst": RTYPE_MBP1,
        "esh4-glbx-mdp3-20231225.mbo.dbn.zst": RTYPE_MBO,  # other contract: not a duplicate
    }


def test_explicit_schema_applies_everywhere(real_dir):
    plan = plan_inputs([str(real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"),
                        str(real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst")], "mbo")
    assert [d.trade_rtype for d in plan.data] == [None, RTYPE_MBO]


def test_same_file_name_twice_is_refused(tmp_path, real_dir):
    src = real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"
    (tmp_path / "a").mkdir()
    copy = tmp_path / "a" / src.name
    copy.write_bytes(src.read_bytes())
    with pytest.raises(SourceError, match="share the file name"):
        plan_inputs([str(src), str(copy)])


def test_consecutive_day_files_form_one_ordered_partition_overlapping_files_do_not(tmp_path, real_dir):
    from datetime import date

    from connectors.inputs import partition_inputs
    from connectors.sample import generate_session

    for day in (date(2026, 11, 19), date(2026, 11, 17), date(2026, 11, 18)):
        generate_session(tmp_path, session_date=day, n_trades=100)
    plan = plan_inputs([str(tmp_path / "*.tbbo.dbn.zst"), str(tmp_path / "*.definition.dbn.zst"),
                        str(real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"),
                        str(real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst")])
    groups = [[d.source_id for d in g] for g in partition_inputs(plan.data)]
    assert sorted(groups) == sorted([
        ["nq-opt-glbx-mdp3-20261117.tbbo.dbn.zst", "nq-opt-glbx-mdp3-20261118.tbbo.dbn.zst",
         "nq-opt-glbx-mdp3-20261119.tbbo.dbn.zst"],
        ["esu4-glbx-mdp3-20240701.trades.dbn.zst"],
        ["esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"],
    ])

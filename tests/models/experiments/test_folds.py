"""Grouped k-fold splitting: whole videos per fold, balanced, deterministic, clear errors (no training here)."""

from __future__ import annotations

import pytest

from models.experiments.cross_validation import group_kfold, grouped_holdout
from pipeline.config import ConfigError


def test_group_kfold_exact_folds_on_a_hand_made_list() -> None:
    # video sizes a:4, b:3, c:2, d:1 -> largest first to the lightest fold: a->0, b->1, c->1 (3 < 4), d->0
    vids = ["a", "b", "a", "c", "b", "a", "d", "c", "b", "a"]
    folds = group_kfold(vids, 2, seed=0)
    assert folds == [[0, 2, 5, 6, 9], [1, 3, 4, 7, 8]]
    assert group_kfold(vids, 2, seed=123) == folds        # no ties in size: the seed cannot matter
    # three folds: a->0, b->1, c->2, d->2 (2 rows < 3 rows)
    assert group_kfold(vids, 3, seed=0) == [[0, 2, 5, 9], [1, 4, 8], [3, 6, 7]]


def test_group_kfold_never_splits_a_video_and_balances_rows() -> None:
    vids = [f"v{i % 7}" for i in range(40)] + ["big"] * 9
    for seed in (0, 1, 2):
        folds = group_kfold(vids, 5, seed)
        assert sorted(i for f in folds for i in f) == list(range(len(vids)))      # a partition
        per_fold = [{vids[i] for i in f} for f in folds]
        for a in range(5):
            for b in range(a + 1, 5):
                assert not per_fold[a] & per_fold[b], (seed, a, b)
        sizes = sorted(len(f) for f in folds)
        assert sizes == [6, 9, 11, 11, 12]        # greedy: spread <= the largest video (9 rows)
        assert group_kfold(vids, 5, seed) == folds                              # deterministic


def test_group_kfold_seed_breaks_ties_between_equal_videos() -> None:
    vids = [v for v in "abcdefgh" for _ in range(2)]
    seen = {tuple(tuple(f) for f in group_kfold(vids, 4, s)) for s in range(6)}
    assert len(seen) > 1
    for layout in seen:
        assert [len(f) for f in layout] == [4, 4, 4, 4]


def test_group_kfold_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"5 folds need at least 5 source videos, but the rows come from 3"):
        group_kfold(["a", "b", "c", "a"], 5, 0)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        group_kfold(["a", "b"], 1, 0)


def test_grouped_holdout_moves_whole_videos() -> None:
    ids = [f"r{i}" for i in range(12)]
    video_of = {f"r{i}": f"v{i // 3}" for i in range(12)}           # 4 videos of 3 rows
    train, valid = grouped_holdout(ids, video_of, 0.2, seed=5)
    assert len(valid) == 3 and len(train) == 9
    assert not {video_of[i] for i in train} & {video_of[i] for i in valid}
    assert grouped_holdout(ids, video_of, 0.2, seed=5) == (train, valid)
    one_video = {i: "v" for i in ids}
    assert grouped_holdout(ids, one_video, 0.2, 0) == (ids, [])          # nothing to carve
    assert grouped_holdout(ids, video_of, 0.0, 0) == (ids, [])

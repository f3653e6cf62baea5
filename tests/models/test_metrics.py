"""Metrics against values computed by hand on fixed arrays (MMSA conventions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.metrics import binary_pr_curve, gaussian_mmd, regression_metrics

PRED = np.array([2.6, -0.4, 0.2, -2.2, 0.0, 1.4])
TRUTH = np.array([3.0, 0.0, -0.6, -1.8, 1.2, 1.0])


def test_mae_corr_and_acc7_by_hand():
    m = regression_metrics(PRED, TRUTH)
    # |errors| = .4 .4 .8 .4 1.2 .4 -> 3.6 / 6
    assert m["mae"] == pytest.approx(0.6)
    assert m["corr"] == pytest.approx(np.corrcoef(PRED, TRUTH)[0, 1])
    # rounded preds 3 -0 0 -2 0 1 vs truth 3 0 -1 -2 1 1 -> matches at 0,1,3,5 -> 4/6
    assert m["acc7"] == pytest.approx(4 / 6)
    assert m["n"] == 6


def test_acc2_has0_counts_zero_as_non_negative():
    m = regression_metrics(PRED, TRUTH)
    # truth>=0: T T F F T T ; pred>=0: T F T F T T -> agree at 0,3,4,5 -> 4/6
    assert m["acc2_has0"] == pytest.approx(4 / 6)


def test_acc2_non0_drops_zero_labels_and_uses_strict_positive():
    m = regression_metrics(PRED, TRUTH)
    # drop index 1 (label 0). truth>0: T F F T T ; pred>0: T T F F T -> agree at 0, 2, 4 -> 3/5
    truth, pred = TRUTH[TRUTH != 0] > 0, PRED[TRUTH != 0] > 0
    assert list(truth) == [True, False, False, True, True]
    assert list(pred) == [True, True, False, False, True]
    assert m["n_non0"] == 5
    assert m["acc2_non0"] == pytest.approx(3 / 5)
    # weighted F1 by hand: class T (support 3): tp=2 fp=1 fn=1 -> p=r=2/3, f1=2/3 ;
    # class F (support 2): tp=1 fp=1 fn=1 -> f1=0.5 ; weighted = (3*2/3 + 2*0.5)/5 = 0.6
    assert m["f1_non0"] == pytest.approx(0.6)


def test_binary_precision_recall_f1_are_support_weighted():
    # non0 split: truth T T T F, prediction T T T T. Class T (support 3): p 3/4, r 1, f1 6/7; class F: all 0
    m = regression_metrics([1.0, 2.0, 0.5, 0.2, -1.0], [2.0, 1.0, 3.0, -1.0, 0.0])
    assert m["n_non0"] == 4
    assert m["precision_non0"] == pytest.approx(3 / 4 * 3 / 4)
    assert m["recall_non0"] == pytest.approx(3 / 4) == m["acc2_non0"]     # weighted recall is accuracy
    assert m["f1_non0"] == pytest.approx(3 / 4 * 6 / 7)
    # has0 split: truth T T T F T (0 is non-negative), prediction T T T T F.
    # T (support 4): tp 3, p 3/4, r 3/4; F (support 1): tp 0 -> 0
    assert m["precision_has0"] == pytest.approx(4 / 5 * 3 / 4)
    assert m["recall_has0"] == pytest.approx(3 / 5) == m["acc2_has0"]


def test_seven_class_precision_recall_f1_of_a_constant_predictor():
    m = regression_metrics([1.2] * 5, [1.0, 0.8, -2.0, 0.0, 3.4])
    # classes: truth 1 1 -2 0 3, prediction 1 everywhere: class 1 (support 2/5) p 2/5, r 1, f1 4/7; others 0
    assert m["precision7"] == pytest.approx(2 / 5 * 2 / 5)
    assert m["recall7"] == pytest.approx(2 / 5) == m["acc7"]
    assert m["f1_7"] == pytest.approx(2 / 5 * 4 / 7)


def test_acc7_clips_to_the_label_range():
    m = regression_metrics([5.0, -4.2], [3.0, -3.0])
    assert m["acc7"] == 1.0
    assert m["mae"] == pytest.approx((2.0 + 1.2) / 2)


def test_constant_predictions_give_zero_corr_not_nan():
    m = regression_metrics([0.5, 0.5, 0.5], [1.0, -1.0, 2.0])
    assert m["corr"] == 0.0


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="differ in length"):
        regression_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        regression_metrics([float("nan")], [1.0])
    with pytest.raises(ValueError, match="zero samples"):
        regression_metrics([], [])


def test_pr_curve_endpoints():
    pr = binary_pr_curve([2.0, 1.0, -1.0, -2.0], [1.0, 2.0, -1.0, -3.0])
    assert pr["precision"][-1] == 1.0 and pr["recall"][-1] == 0.0
    # perfectly separated scores: some threshold has precision 1 at recall 1
    assert np.any((pr["precision"] == 1.0) & (pr["recall"] == 1.0))
    with pytest.raises(ValueError, match="both positive and negative"):
        binary_pr_curve([1.0, 2.0], [1.0, 2.0])


def test_mmd_zero_for_identical_samples_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    assert gaussian_mmd(x, x) == pytest.approx(0.0, abs=1e-12)
    near = gaussian_mmd(x, torch.randn(64, 8, generator=g))
    far = gaussian_mmd(x, torch.randn(64, 8, generator=g) + 3.0)
    assert far > near >= -1e-9 and math.isfinite(far)

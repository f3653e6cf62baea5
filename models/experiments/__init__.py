"""Experiments on the feature cache: ablation grids, grouped k-fold cross-validation, language transfer."""

from models.experiments.ablation import run_ablation
from models.experiments.common import ExperimentResult
from models.experiments.cross_validation import group_kfold, run_cross_validation
from models.experiments.language_transfer import run_language_transfer

__all__ = ["ExperimentResult", "group_kfold", "run_ablation", "run_cross_validation", "run_language_transfer"]

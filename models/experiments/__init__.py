"""Experiments on the feature cache: ablation grids (ablation), grouped k-fold cross-validation
(cross_validation), language transfer (language_transfer); shared machinery in runs, rehearsal sampling in
rehearsal."""

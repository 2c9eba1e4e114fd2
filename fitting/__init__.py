"""Fitting: turn measured activation trajectories into emergence curves (Eq. 9 of arXiv 2508.03616).

Public API: ``fitting.curves`` (curve families and Jacobians), ``fitting.derived`` (the
quantities of DESIGN.md section 5, defined once), ``fitting.estimator.EmergenceCurveFitter``
(scikit-learn style), ``fitting.batch.fit_table`` (every series of a stats table).
"""

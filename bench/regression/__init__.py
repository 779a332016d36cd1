"""``bench check``: a run's rows against stored reference rows, as a regression gate.

Rows are paired by job key, else by the matrix's labels (:mod:`bench.regression.matching`); paired rows of
the same job are tested for a change beyond chance (:mod:`bench.regression.significance`); the gate's rule
and exit codes are in :mod:`bench.regression.verdict`, its table and JSON in :mod:`bench.regression.render`.
"""

#: The multiple-comparison corrections ``bench check --correction`` offers (statsmodels' ``multipletests``
#: methods); here, not beside the tests, so the CLI can list them without importing scipy.
CORRECTIONS = ("holm", "bonferroni", "hommel", "fdr_bh")

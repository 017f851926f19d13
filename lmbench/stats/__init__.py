"""Statistics over a handful of seeds: t confidence intervals, paired tests, result tables and
their formatting. Pure numerics (numpy, scipy, pandas); nothing here knows about runs or stores."""

from lmbench.stats.format import format_mean_ci, format_number, format_p, render_table
from lmbench.stats.inference import CONFIDENCE, mean_ci, paired_test
from lmbench.stats.tables import BASELINE_PARAM, ablation_table, compare_table, value_label

__all__ = [
    "BASELINE_PARAM",
    "CONFIDENCE",
    "ablation_table",
    "compare_table",
    "format_mean_ci",
    "format_number",
    "format_p",
    "mean_ci",
    "paired_test",
    "render_table",
    "value_label",
]

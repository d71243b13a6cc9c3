"""The comparison: a sweep's runs read back from the store, statistics over seeds (paired tests,
Holm, bounded intervals), tables and reports. ``python -m pipeline.compare``.

Reads what tracking wrote; never imports TensorFlow or Keras. May use: tracking, config.
"""

from pipeline.compare.load import (
    CompareError,
    effects_table,
    load_runs,
    main,
    main_effects,
    report_runs,
    summarize,
    summary_table,
    undecided,
    write_report,
)

__all__ = [
    "CompareError",
    "effects_table",
    "load_runs",
    "main",
    "main_effects",
    "report_runs",
    "summarize",
    "summary_table",
    "undecided",
    "write_report",
]

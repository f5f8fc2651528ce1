"""Reports from run folders: grouped tables with intervals and paired tests, survey metrics, figures.

``delift-report <run or multirun folder>...`` (:mod:`delift.report.cli`) writes ``results/<name>/``.
Modules, bottom to top: :mod:`~delift.report.stats` (means, t-intervals, paired bootstrap),
:mod:`~delift.report.jobs` (run folders, grouping by varying config), :mod:`~delift.report.paired`
(per-example differences), :mod:`~delift.report.frame` (the tidy frame), :mod:`~delift.report.tables`,
:mod:`~delift.report.survey`, :mod:`~delift.report.figures`, :mod:`~delift.report.kernel_figures`,
:mod:`~delift.report.listing` (one row per job), :mod:`~delift.report.cli`.
"""

"""One run of delift and what surrounds it: the stages (:mod:`~delift.run.pipeline`), the use cases' data
(:mod:`~delift.run.usecases`), the models check before anything loads (:mod:`~delift.run.preflight`), the
listeners that write result files and report to the tracker (:mod:`~delift.run.listeners`, with
:mod:`~delift.run.provenance`), the sweep rules (:mod:`~delift.run.sweep`) and the launcher checks
(:mod:`~delift.run.launch_checks`). The entry point (:mod:`delift.cli`) and ``delift-plan`` sit above it."""

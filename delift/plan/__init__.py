"""The cost plan: ``delift-plan <overrides>`` says what a run or a sweep will cost before it starts.

It composes the config as ``delift`` does (``-m`` sweeps expanded by Hydra's own basic sweeper), loads and
tokenises the data with the real tokenizers, loads no model weights, and counts per job and stage what the
run executes (:mod:`.kernel` follows the engine's own block schedule), its FLOPs (:mod:`.shapes`), the
seconds here and the hours on named accelerators (:mod:`.timing`), and the kernels' disk and memory.

- :mod:`.shapes`: a model's shape without its weights, and the FLOP formula;
- :mod:`.work`: what one stage runs (sequences, pairs, tokens, attended context, scored positions, passes);
- :mod:`.kernel`: the utility kernels' work, block by block (exact, learned, knn);
- :mod:`.stages`: every stage of a job (kernels, per-example scoring, fine-tuning, generation);
- :mod:`.jobs`: the jobs of a command line (sweeps), their data and what the cache shares between them;
- :mod:`.timing`: calibration on this machine and the accelerators' peak throughputs;
- :mod:`.cli`: the entry point and the printed table.
"""

"""Bottom layer: loading causal LMs (``loading``), the tiny test model (``tiny``) and sentence embedders
(``embeddings``). Import from the modules: this package imports nothing, so reading a constant of
``embeddings`` never loads torch."""

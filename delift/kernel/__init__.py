"""DELIFT's pairwise utility kernel: settings and entry-wise maths (``settings``), the engine, the exact
provider (``provider``), the approximation strategies (``approximations``) and the front object that
selectors use (``front.Kernels``). Import from the modules themselves; this package imports nothing,
so importing one module never loads the others."""

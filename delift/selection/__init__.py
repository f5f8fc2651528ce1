"""Subset selection: the selector interface, DELIFT's submodular selectors and the simple baselines."""

from delift.selection.base import ScoreSelector, Selection, SelectionContext, Selector, budget_from_fraction

__all__ = ["ScoreSelector", "Selection", "SelectionContext", "Selector", "budget_from_fraction"]

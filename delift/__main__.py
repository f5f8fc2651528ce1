"""``python -m delift``: the same entry point as the ``delift`` command (:mod:`delift.cli`)."""

from delift.cli import main

main()

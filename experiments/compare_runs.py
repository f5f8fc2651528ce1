"""Are two sets of run folders the same results? (a refactor's check: same config, code before and after)

    python experiments/compare_runs.py BEFORE_ROOT AFTER_ROOT

Every run folder directly under BEFORE_ROOT (one holding a subset.json or metrics.json) is compared with the
folder of the same name under AFTER_ROOT: subset.json and metrics.json as JSON after dropping wall seconds
(``time/*`` and every key containing ``seconds``) and replacing each root's own path (cache folders named in
a subset's info), predictions.jsonl byte for byte. Prints one line per difference; last line
``<n> identical, <m> different``; exits 1 when anything differs or is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FILES = ("subset.json", "metrics.json", "predictions.jsonl")


def comparable(node: Any, root: Path) -> Any:
    """``node`` without wall seconds and with ``root``'s path written as ROOT."""
    if isinstance(node, dict):
        return {k: comparable(v, root) for k, v in node.items() if "seconds" not in k and not k.startswith("time/")}
    if isinstance(node, list):
        return [comparable(v, root) for v in node]
    if isinstance(node, str):
        return node.replace(str(root), "ROOT")
    return node


def same_file(name: str, before: Path, after: Path, roots: tuple[Path, Path]) -> bool:
    if name.endswith(".json"):
        return (comparable(json.loads(before.read_text()), roots[0])
                == comparable(json.loads(after.read_text()), roots[1]))
    return before.read_bytes() == after.read_bytes()


def compare(before_root: Path, after_root: Path) -> tuple[int, list[str]]:
    """(identical files, one message per different or missing file)."""
    same, problems = 0, []
    runs = sorted(p for p in before_root.iterdir() if p.is_dir() and any((p / f).exists() for f in FILES))
    if not runs:
        problems.append(f"{before_root}: no run folder (with {' or '.join(FILES[:2])}) under it")
    for run in runs:
        other = after_root / run.name
        for name in FILES:
            if not (run / name).exists():
                continue
            if not (other / name).exists():
                problems.append(f"{run.name}/{name}: missing under {after_root}")
            elif same_file(name, run / name, other / name, (before_root.resolve(), after_root.resolve())):
                same += 1
            else:
                problems.append(f"{run.name}/{name}: differs")
    return same, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    same, problems = compare(args.before, args.after)
    for line in problems:
        print(line)
    print(f"{same} identical, {len(problems)} different")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

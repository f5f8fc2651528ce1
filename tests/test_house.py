"""experiments/house.py: each of issue 28's counts on small source trees counted by hand, the layout map is
current, and the real tree counts 0 everywhere. Reads source only: no torch."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
house = importlib.import_module("house")
house_shadow = importlib.import_module("house_shadow")
house_source = importlib.import_module("house_source")
LAST_LINE = re.compile(r"^settings declared twice: (\d+); yaml restating defaults: (\d+); "
                       r"shadow name lists: (\d+); import cycles: (\d+)$")


def tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path -> text, dedented) under ``root``; every folder of delift/ gets an __init__.py."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in [p for p in (root / "delift").rglob("*") if p.is_dir()] + [root / "delift"]:
        init = folder / "__init__.py"
        if not init.exists() and any(folder.glob("*.py")):
            init.write_text('"""A package."""\n')
    return root


def test_same_compares_config_values_as_omegaconf_would():
    assert house.same(3, 3.0) and house.same([1, "a"], (1.0, "a")) and house.same(None, None)
    assert not house.same(True, 1) and not house.same(0, False) and not house.same("1", 1)
    assert not house.same(house_source.UNKNOWN, house_source.UNKNOWN)


def test_declared_twice_counts_each_knob_with_a_default_and_its_conflicts(tmp_path):
    index = house_source.Index(tree(tmp_path, {"delift/parts.py": '''
        """Parts."""
        from dataclasses import dataclass, field

        @dataclass
        class Sub:
            depth: int = 2

        class Thing:
            @dataclass
            class Config:
                a: int = 1
                b: int = 2

                def problems(self):
                    return {"a": "negative"} if self.a < 0 else {}

            def __init__(self, a=1, b=3):
                if a < 0:
                    raise ValueError("a")
                self.a, self.b = a, b

        class Other:
            @dataclass
            class Config:
                x: int = 0
                sub: Sub = field(default_factory=Sub)

            def __init__(self, x, sub=None, extra=7):  # x has no default; sub=None means Sub()
                self.x, self.sub = x, sub or Sub()

        class NoConfig:
            def __init__(self, a=1, b=3):
                pass
        '''}))
    twice, conflicts, validated, unverified = house.declared_twice(index)
    assert sorted(f.what.split(" ")[0] for f in twice) == ["Other.sub", "Thing.a", "Thing.b"]
    assert [f.what for f in conflicts] == ["Thing.b: Config default 2, __init__ default 3"]
    assert [f.what.split(":")[0] for f in validated] == ["Thing.a"]
    assert unverified == []
    assert twice[0].where.startswith("delift/parts.py:")


SCHEMA_TREE = {
    "delift/config/schema.py": '''
        """Top schema."""
        from dataclasses import dataclass, field
        from typing import Any

        from omegaconf import MISSING

        from delift.models.config import ModelConfig

        SEED = 0

        @dataclass
        class ExperimentConfig:
            name: str = "quickstart"
            seed: int = SEED
            model: ModelConfig = MISSING
            selector: Any = MISSING
        ''',
    "delift/models/config.py": '''
        """Model schema."""
        from dataclasses import dataclass
        from typing import Optional

        from omegaconf import MISSING

        @dataclass
        class Shape:
            layers: int = 2
            tied: bool = False

        @dataclass
        class ModelConfig:
            name: str = MISSING
            dtype: str = "auto"
            shape: Optional[Shape] = None
        ''',
    "delift/sel.py": '''
        """A selector."""
        from dataclasses import dataclass

        class Pick:
            name = "pick"

            @dataclass
            class Config:
                _target_: str = "delift.sel.Pick"
                k: int = 5
                lr: float = 1.0
                flag: bool = False
                path: str = "a"
        ''',
    "conf/config.yaml": "defaults:\n  - _self_\nname: other\nseed: 0\n",
    "conf/model/m.yaml": "name: m\ndtype: auto\nshape:\n  layers: 2\n  tied: true\n",
    "conf/selector/pick.yaml": "_target_: delift.sel.Pick\nk: 5\nlr: 1\nflag: 0\npath: ${name}\n",
    "conf/experiment/e.yaml": "# @package _global_\nseed: 0\n",
}


def test_yaml_restating_counts_leaves_equal_to_their_schema_default(tmp_path):
    found = house.yaml_restating(house_source.Index(tree(tmp_path, SCHEMA_TREE)))
    # seed (top schema, via a constant), dtype, shape.layers (nested through Optional), k, lr (1 == 1.0);
    # not: name (differs or MISSING), tied (differs), flag (0 is no bool), path (an interpolation)
    assert [f.where for f in found["restating"]] == ["conf/config.yaml:4", "conf/model/m.yaml:2",
                                                     "conf/model/m.yaml:4", "conf/selector/pick.yaml:2",
                                                     "conf/selector/pick.yaml:3"]
    assert "shape.layers: 2 is Shape.layers's default" in found["restating"][2].what
    assert found["unchecked"] == ["conf/experiment/e.yaml"]


def test_yaml_schemas_follow_here_defaults_open_blocks_and_discriminated_groups(tmp_path, monkeypatch):
    index = house_source.Index(tree(tmp_path, {
        "delift/config/schema.py": '''
            """Top schema."""
            from dataclasses import dataclass, field
            from typing import Any

            from delift.kernel.config import KernelConfig

            @dataclass
            class ExperimentConfig:
                kernel: KernelConfig = field(default_factory=KernelConfig)
                judge: Any = None
            ''',
        "delift/kernel/config.py": '''
            """Assembled like delift's: a base plus one block per strategy."""
            from dataclasses import dataclass, make_dataclass

            @dataclass
            class BaseKernel:
                size: int = 4

            @dataclass
            class FancyConfig:
                n: int = 3

            class Fancy:
                name = "fancy"
                Config = FancyConfig

            def _assemble():
                return make_dataclass("KernelConfig", [], bases=(BaseKernel,))

            KernelConfig = _assemble()
            ''',
        "delift/judge.py": '''
            """Settings picked by a key."""
            from dataclasses import dataclass

            @dataclass
            class Local:
                backend: str = "local"
                tokens: int = 8

            SETTINGS = {"local": Local}
            ''',
        "delift/proto.py": '''
            """A protocol."""
            from dataclasses import dataclass

            class Train:
                @dataclass
                class Config:
                    _target_: str = "delift.proto.Train"
                    name: str = "base"
                    epochs: int = 3
            ''',
        "conf/kernel/default.yaml": "size: 4\nfancy:\n  n: 3\nplain:\n  n: 1\n",
        "conf/judge/local.yaml": "backend: local\ntokens: 8\n",
        "conf/evaluation/base.yaml": "_target_: delift.proto.Train\nname: base\n",
        "conf/evaluation/child.yaml": "defaults:\n  - base@_here_\n  - _self_\nname: child\nepochs: 3\n",
    }))
    monkeypatch.setitem(house.DISCRIMINATED, "judge", ("delift.judge.SETTINGS", "backend"))  # the registry, here
    found = house.yaml_restating(index)
    assert [f.where for f in found["restating"]] == ["conf/evaluation/base.yaml:2", "conf/evaluation/child.yaml:5",
                                                     "conf/judge/local.yaml:2", "conf/kernel/default.yaml:1",
                                                     "conf/kernel/default.yaml:3"]
    assert "fancy.n: 3 is FancyConfig.n's default" in found["restating"][-1].what
    assert [f.where for f in found["unknown"]] == ["conf/kernel/default.yaml:4"]  # no part named plain


SHADOW_TREE = {
    "delift/selection/a.py": '''
        """Two selectors."""
        from dataclasses import dataclass

        class Alpha:
            name = "alpha"

            @dataclass
            class Config:
                _target_: str = "delift.selection.a.Alpha"
                width: int = 3

        class Beta:
            name = "beta"

        def helper():
            return 1
        ''',
    "delift/selection/registry.py": '"""Home."""\nNAMES = ("alpha", "beta")  # at home: legitimate\n',
    "conf/selector/alpha.yaml": "_target_: delift.selection.a.Alpha\n",
    "conf/selector/beta.yaml": "_target_: delift.selection.a.Beta\n",
    "delift/report/labels.py": '''
        """Downstream."""
        LABELS = {"alpha": "A", "beta": "B"}
        ONE = ("alpha", "other")


        def is_alpha(selector, mode):
            if mode == "alpha":  # not named like a selector: no finding
                return False
            return selector == "alpha"


        def width(sel):
            return getattr(sel, "width", None)
        ''',
    "delift/plan/uses.py": '"""Downstream."""\nfrom delift.selection.a import helper\n',
    "delift/models/loading.py": '"""Home registry."""\nSOURCES = {"hub": print, "tiny": len}\n',
    "delift/models/config.py": '"""A hand copy at home."""\nSOURCE_NAMES = ("hub", "tiny")\n',
}
SHADOW_KINDS = (house_shadow.Kind("selectors", "delift/selection", ("selector", "name"), conf="selector"),
                house_shadow.Kind("model sources", "delift/models", ("source",),
                                  registry="delift.models.loading.SOURCES"))


def test_shadow_lists_find_each_form_outside_the_home_package(tmp_path):
    index = house_source.Index(tree(tmp_path, SHADOW_TREE))
    found = house_shadow.shadow_lists(index, SHADOW_KINDS)
    assert [line.split(": ")[0] + ": " + line.split(": ")[1] for line in found] == [
        "delift/models/config.py:2: hand copy",
        "delift/plan/uses.py:2: part module import (selectors)",
        "delift/report/labels.py:3: name list of selectors",
        "delift/report/labels.py:10: comparison with selectors",
        "delift/report/labels.py:14: knob probe",
    ]
    assert "LABELS ['alpha', 'beta']" in found[2] and "(keys of delift.models.loading.SOURCES)" in found[0]


def test_import_cycles_count_module_level_imports_only(tmp_path):
    index = house_source.Index(tree(tmp_path, {
        "delift/a.py": '"""A."""\nfrom delift import b\n',
        "delift/b.py": '"""B."""\nimport delift.a\n',
        "delift/d.py": '"""D."""\nfrom delift.e import thing\n',
        "delift/e.py": '"""E."""\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from delift import d\n'
                       'thing = 1\n\ndef late():\n    from delift.d import thing\n    return thing\n',
        "delift/f.py": '"""F: no cycle."""\nfrom delift.a import b\n',
    }))
    counted, deferred = house.import_cycles(index)
    assert counted == [["delift.a", "delift.b"]]
    assert deferred == [["delift.d", "delift.e"]]


def test_cli_ends_with_the_four_counts_and_fail_exits_1(tmp_path, capsys):
    root = tree(tmp_path, {**SCHEMA_TREE, "delift/a.py": '"""A."""\nfrom delift import b\n',
                           "delift/b.py": '"""B."""\nimport delift.a\n'})
    assert house.main([str(root), "--verbose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert LAST_LINE.match(lines[-1]).groups() == ("0", "5", "0", "1")
    assert "  conf/model/m.yaml:2: dtype: 'auto' is ModelConfig.dtype's default" in lines
    assert house.main([str(root), "--fail"]) == 1
    clean = tree(tmp_path / "clean", {"delift/a.py": '"""A."""\nX = 1\n'})
    assert house.main([str(clean), "--fail"]) == 0
    assert LAST_LINE.match(capsys.readouterr().out.splitlines()[-1]).groups() == ("0", "0", "0", "0")


def test_layout_lists_packages_and_modules_and_counts_missing_docstrings(tmp_path):
    index = house_source.Index(tree(tmp_path, {"delift/__init__.py": '"""Top.\n\nMore."""\n',
                                               "delift/run.py": '"""Runs it.\n\nDetails."""\n',
                                               "delift/sub/bare.py": "X = 1\n"}))
    text, missing = house.layout(index)
    assert missing == 1
    assert "## delift/\n\nTop.\n\n- `delift/run.py`: Runs it.\n" in text
    assert "## delift/sub/\n\nA package.\n\n- `delift/sub/bare.py`: (no docstring)\n" in text
    assert text.rstrip().endswith("2 packages, 2 modules; without a docstring: 1.")


def test_layout_map_is_current():
    expected, _ = house.layout(house_source.Index(REPO))
    assert (REPO / "docs" / "layout.md").read_text() == expected, (
        f"docs/layout.md is out of date: run `{house.LAYOUT_COMMAND}`")


def test_the_house_is_kept():
    assert house.measure(REPO)["counts"] == {"settings declared twice": 0, "yaml restating defaults": 0,
                                             "shadow name lists": 0, "import cycles": 0}

"""The README and the pages under docs/ name only what exists: relative links (and their #anchors), repository
paths in code (`delift/run/pipeline.py`, `conf/...`, `experiments/...`, `scripts/...`) and dotted modules
(`delift.run.pipeline.run_experiment`); and the README stays a front door of at most 300 lines.

Exempt by rule, not by list:
- a path with a placeholder or a pattern (`<name>`, `*`, `{md,csv}`, `%j`): it names many files or none yet;
- a path followed by ``(new)``: a file the reader is told to write (docs/extending.md);
- a `results/...` path inside a command (a code span with a space, or a fenced block): what the command writes;
- a link to a generated page (GENERATED) while the page is absent; test_generated_pages_exist asserts it is
  there once its generator is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATED = {"docs/layout.md": ("experiments/house.py", "python experiments/house.py --layout > docs/layout.md")}
README_MAX_LINES = 300

PREFIXES = ("delift", "conf", "experiments", "scripts", "tests", "notebooks", "results", "docs", ".ci")
PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(map(re.escape, PREFIXES)) + r")/[\w./<>*{},%-]*)")
MODULE = re.compile(r"(?<![\w./-])(delift(?:\.[A-Za-z_]\w*)+)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
PLACEHOLDER = re.compile(r"[<>*{}%]")


def split_page(text: str) -> tuple[list[str], list[str], list[str]]:
    """(prose lines, inline code spans, fenced code lines) of a Markdown page."""
    prose, spans, fenced, in_fence = [], [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence or line.startswith("    ") and not line.lstrip().startswith(("-", "|")):
            fenced.append(line)
            continue
        prose.append(line)
        spans += re.findall(r"`([^`]+)`", line)
    return prose, spans, fenced


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    prose, _, _ = split_page(page.read_text(encoding="utf-8"))
    for line in prose:
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            seen[s] = seen.get(s, -1) + 1
    out = set()
    for s, n in seen.items():
        out |= {s} | {f"{s}-{i}" for i in range(1, n + 1)}
    return out


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def paths_in(text: str, in_command: bool) -> list[tuple[str, bool]]:
    """(path, exempt) for every repository path in a piece of code."""
    out = []
    for m in PATH.finditer(text):
        path = m.group(1).rstrip(".,:;")
        after = text[m.end():].lstrip()
        exempt = (bool(PLACEHOLDER.search(path)) or after.startswith("(new)")
                  or (path.startswith("results/") and in_command))
        out.append((path, exempt))
    return out


def module_problem(dotted: str) -> str | None:
    """None when `dotted` names a module, package or a name defined in one; else what is missing."""
    parts, here = dotted.split("."), ROOT / "delift"
    for i, part in enumerate(parts[1:], start=1):
        if (here / part).is_dir():
            here = here / part
        elif (here / f"{part}.py").is_file():
            rest = parts[i + 1:]
            text = (here / f"{part}.py").read_text(encoding="utf-8")
            if rest and not re.search(rf"\b{re.escape(rest[0])}\b", text):
                return f"{rest[0]} is not in {rel(here / f'{part}.py')}"
            return None
        else:
            init = here / "__init__.py"
            if init.is_file() and re.search(rf"\b{re.escape(part)}\b", init.read_text(encoding="utf-8")):
                return None
            return f"no module, package or name {part} in {rel(here)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_links_resolve(page):
    prose, _, _ = split_page(page.read_text(encoding="utf-8"))
    bad = []
    for line in prose:
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            name = rel(dest) if dest.is_relative_to(ROOT) else str(dest)
            if not dest.exists():
                if name not in GENERATED:
                    bad.append(f"{target}: {name} does not exist")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{target}: no heading #{anchor} in {name}")
    assert not bad, f"{rel(page)}: broken links:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_paths_exist(page):
    _, spans, fenced = split_page(page.read_text(encoding="utf-8"))
    found = [p for span in spans for p in paths_in(span, in_command=" " in span.strip())]
    found += [p for line in fenced for p in paths_in(line, in_command=True)]
    missing = sorted({p for p, exempt in found if not exempt and not (ROOT / p).exists()} - set(GENERATED))
    assert not missing, f"{rel(page)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_modules_exist(page):
    _, spans, fenced = split_page(page.read_text(encoding="utf-8"))
    names = {m for text in spans + fenced for m in MODULE.findall(text)}
    bad = sorted(f"{n}: {p}" for n in names if (p := module_problem(n)))
    assert not bad, f"{rel(page)} names modules that do not exist:\n" + "\n".join(bad)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(readme)}
    unlinked = [rel(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages missing from the README's map: {unlinked}"
    for page in GENERATED:
        assert (ROOT / page).resolve() in linked, f"the generated {page} is not linked from the README"


def test_generated_pages_exist():
    for page, (generator, command) in GENERATED.items():
        if not (ROOT / generator).exists():
            pytest.skip(f"{generator} (the generator of {page}) is not in this checkout")
        assert (ROOT / page).is_file(), f"{page} is missing: run {command}"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, more than {README_MAX_LINES}"


def test_the_checks_catch_what_they_should(tmp_path):
    """The rules themselves, on hand-made cases: a missing path is found, an exempt one is not."""
    assert paths_in("`delift/nope.py`", in_command=False) == [("delift/nope.py", False)]
    assert paths_in("conf/selector/<name>.yaml", in_command=False) == [("conf/selector/<name>.yaml", True)]
    assert paths_in("conf/selector/longest.yaml (new)", in_command=False)[0][1] is True
    assert paths_in("delift-report x --out results/x", in_command=True) == [("results/x", True)]
    assert paths_in("results/x.md", in_command=False) == [("results/x.md", False)]
    assert paths_in("conf/selector/delift.yaml", in_command=False) == [("conf/selector/delift.yaml", False)]
    assert MODULE.findall("conf/selector/delift.yaml delift-plan") == []
    assert module_problem("delift.run.pipeline.run_experiment") is None
    assert module_problem("delift.pipeline") is not None
    assert module_problem("delift.run.pipeline.no_such_name_anywhere") is not None
    assert slug("Cost plan: `delift-plan`") == "cost-plan-delift-plan"
    assert slug("Weights & Biases") == "weights--biases"

"""report.html: one self-contained page with report.md's tables (sortable), its figures and a subset browser.

Unit tests read the page with the standard library's HTML parser; the browser test loads it in headless
Chromium through selenium (skipped, with the reason, where selenium, chromium or chromedriver is missing).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report_support import rows, write_job

from delift.report import html as html_module
from delift.report.cli import build_report

VOID = {"meta", "link", "img", "br", "input", "hr", "source", "wbr"}
NASTY = 'bad </script><b>x "q" & <i>'
GAINS = {0: [0.75, 0.5, 0.125], 1: [0.625, 0.25, 0.0625]}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                    found.append(child)
                found += child.all(tag, cls)
        return found


class Tree(HTMLParser):
    """The page as a tree of :class:`Node`; every start tag seen is counted in ``tags``."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("document", {}, None)
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        node = Node(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_endtag(self, tag):
        node = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.node = node.parent

    def handle_data(self, data):
        self.node.children.append(data)


def cells_of(table: Node) -> list[list[str]]:
    return [[c.text().strip() for c in tr.children if isinstance(c, Node) and c.tag in ("td", "th")]
            for tr in table.all("tr")]


def markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if re.fullmatch(r"\|(---\|)+", line):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            current = current if current is not None else []
            current.append(cells)
        elif current is not None:
            tables.append(current)
            current = None
    return tables + ([current] if current else [])


def example(ident: str, nasty: bool = False) -> dict:
    return {"instruction": NASTY if nasty else f"do {ident}", "input": f"in {ident}", "output": f"out {ident}"}


def sweep(root: Path) -> None:
    """Random and DELIFT, seeds 0 and 1, budget 3 of 8. DELIFT seed 0 carries subset_examples.jsonl (with an
    instruction holding markup); seed 1 is a run from before the file existed; Random seed 0 has the file too."""
    for seed in (0, 1):
        for selector, offset in (("random", 4), ("delift", 0)):
            ids = [f"ex{(offset + 2 * k + seed) % 8}" for k in range(3)]
            gains = GAINS[seed] if selector == "delift" else [None, None, None]
            job = write_job(root, f"{selector}{seed}", selector, seed,
                            {"qlora/rouge1": 0.1 + 0.2 * seed + (-0.05 if selector == "delift" else 0.0),
                             "subset/size": 3, "pool/size": 8},
                            predictions=rows("qlora", {"rouge1": [0.1 * seed, 0.5]}),
                            subset={"selected_ids": ids, "gains": gains, "budget": 3, "pool_size": 8})
            if seed == 0:
                lines = [{"pick": k + 1, "id": i, **example(i, nasty=selector == "delift" and k == 1), "gain": g}
                         for k, (i, g) in enumerate(zip(ids, gains))]
                (job / "subset_examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.fixture
def report(tmp_path):
    sweep(tmp_path / "runs")
    done = build_report([tmp_path / "runs"], out=tmp_path / "report")
    return done, (tmp_path / "report" / "report.html").read_text()


def panels(tree: Tree) -> dict[tuple[str, str], Node]:
    """Job panels by (selector, seed)."""
    out = {}
    for section in tree.root.all("section", "job"):
        seed = re.search(r"seed (\S+)$", section.all("h3")[0].text()).group(1)
        out[(section.attrs["data-selector"], seed)] = section
    return out


def test_the_page_is_one_file_that_requests_nothing(report):
    done, page = report
    assert done["html"] == done["out"] / "report.html"
    tree = Tree(page)
    links = [(n.tag, a, v) for n in [tree.root, *tree.root.all("img"), *tree.root.all("a"), *tree.root.all("link"),
                                      *tree.root.all("script")] for a, v in n.attrs.items() if a in ("src", "href")]
    assert links and all(v.startswith(("data:", "#")) for _, _, v in links), links
    assert not re.search(r"https?://", page)  # no URL anywhere: nothing can be fetched
    assert all(not n.attrs.get("src") for n in tree.root.all("script"))  # the script is inline
    images = [n.attrs["src"] for n in tree.root.all("img")]
    assert len(images) == len(done["figures"]) > 0
    for src, path in zip(images, done["figures"]):  # each figure embedded byte for byte, in report.md's order
        assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == path.read_bytes()
    captions = tree.root.all("p", "caption")  # "*Figure 1 (`name.png`): ...*" under each figure
    assert [c.all("code")[0].text() for c in captions] == [p.name for p in done["figures"]]
    assert [c.text() for c in captions] == [f"Figure {i} ({p.name}): {done['captions'][p.name]}"
                                            for i, p in enumerate(done["figures"], 1)]


def test_every_table_of_report_md_is_in_the_page(report):
    done, page = report
    expected = markdown_tables(done["report"].read_text())
    assert len(expected) >= 3  # results, paired differences, survey tables
    found = [cells_of(t) for t in Tree(page).root.all("table")]
    for table in expected:
        assert table in found, table[0]
    sortable = [t for t in Tree(page).root.all("table") if "sortable" in t.attrs.get("class", "")]
    assert len(sortable) == len(Tree(page).root.all("table"))


def test_report_files_beside_the_page_are_unchanged(tmp_path, monkeypatch):
    sweep(tmp_path / "runs")
    with_page = build_report([tmp_path / "runs"], out=tmp_path / "a", draw=False)["out"]
    monkeypatch.setattr(html_module, "write_page", lambda out, *args: out / "report.html")
    without = build_report([tmp_path / "runs"], out=tmp_path / "b", draw=False)["out"]
    files = sorted(p.relative_to(with_page) for p in with_page.rglob("*") if p.is_file())
    assert sorted(p.relative_to(without) for p in without.rglob("*") if p.is_file()) == [
        f for f in files if f.name != "report.html"]
    assert all((with_page / f).read_bytes() == (without / f).read_bytes() for f in files if f.name != "report.html")


def test_dataset_text_is_escaped(report):
    _, page = report
    tree = Tree(page)
    assert "b" not in tree.tags and "i" not in tree.tags  # the instruction's tags stayed text
    assert page.count("</script>") == 1  # only the page's own script ends
    assert "bad &lt;/script&gt;&lt;b&gt;x &quot;q&quot; &amp; &lt;i&gt;" in page
    texts = [div.text() for div in tree.root.all("div", "text")]
    assert NASTY in texts  # and the browser shows it as written


def test_the_subset_browser_has_one_row_per_pick_with_its_gain(report):
    _, page = report
    found = panels(Tree(page))
    assert sorted(found) == [("delift", "0"), ("delift", "1"), ("random", "0"), ("random", "1")]
    for seed in (0, 1):
        own, beside = found[("delift", str(seed))].all("table")  # DELIFT's picks, then Random's beside them
        head, *body = cells_of(own)
        assert head[:3] == ["pick", "id", "gain"]
        assert [r[0] for r in body] == ["1", "2", "3"]
        assert [r[1] for r in body] == [f"ex{(2 * k + seed) % 8}" for k in range(3)]
        assert [float(r[2]) for r in body] == GAINS[seed]
        random_body = cells_of(beside)[1:]
        assert [r[1] for r in random_body] == [f"ex{(4 + 2 * k + seed) % 8}" for k in range(3)]
        assert [r[2] for r in random_body] == ["–"] * 3
        common = {f"ex{seed}", f"ex{4 + seed}"}  # DELIFT's picks 1 and 3 are Random's 3 and 1
        for table in (own, beside):
            assert {r.all("td")[1].text() for r in table.all("tr", "shared")} == common
        assert "2 picked by both" in found[("delift", str(seed))].text()
    seed0 = cells_of(found[("delift", "0")].all("table")[0])
    assert seed0[0] == ["pick", "id", "gain", "instruction", "input", "response"]
    assert seed0[1][3:] == ["do ex0", "in ex0", "out ex0"]
    old = found[("delift", "1")]
    assert len(cells_of(old.all("table")[0])[0]) == 3  # no text columns for a run from before the file
    assert "ids and gains from subset.json only: no subset_examples.jsonl" in old.text()
    options = [(o.attrs["value"], o.text()) for o in Tree(page).root.all("option")]
    assert options == [("", "all selectors"), ("random", "Random"), ("delift", "DELIFT")]


def test_an_examples_file_that_disagrees_with_subset_json_falls_back_to_ids(tmp_path):
    sweep(tmp_path / "runs")
    (tmp_path / "runs" / "delift0" / "subset_examples.jsonl").write_text('{"pick": 1, "id": "other"}\n')
    page = build_report([tmp_path / "runs"], out=tmp_path / "r", draw=False)["html"].read_text()
    panel = panels(Tree(page))[("delift", "0")]
    assert "its ids differ from subset.json's selected_ids" in panel.text()
    assert [r[1] for r in cells_of(panel.all("table")[0])[1:]] == ["ex0", "ex2", "ex4"]


def test_the_run_writes_the_picked_examples_beside_subset_json(tmp_path):
    from delift.config.loader import compose_config
    from delift.data.records import Example
    from delift.report.html_picks import EXAMPLES_FILE
    from delift.run.listeners import SUBSET_EXAMPLES_JSONL, ResultFiles, RunInfo
    from delift.selection.base import Selection

    assert EXAMPLES_FILE == SUBSET_EXAMPLES_JSONL
    pool = [Example(id=f"p{i}", instruction=f"ins {i}", input=f"in {i}", output=f"out {i}", source="s") for i in range(5)]
    files = ResultFiles(RunInfo(compose_config(["experiment=smoke"]), tmp_path, {}))
    files.on_selection(Selection([3, 0], [0.5, 0.25], "delift", 2), pool, {})
    lines = [json.loads(line) for line in (tmp_path / SUBSET_EXAMPLES_JSONL).read_text().splitlines()]
    assert lines == [{"pick": 1, "id": "p3", "instruction": "ins 3", "input": "in 3", "output": "out 3", "gain": 0.5},
                     {"pick": 2, "id": "p0", "instruction": "ins 0", "input": "in 0", "output": "out 0", "gain": 0.25}]
    assert json.loads((tmp_path / "subset.json").read_text())["selected_ids"] == ["p3", "p0"]


def browser_or_skip():
    """A headless Chromium driver with its console log, or a skip naming what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def test_the_page_works_in_headless_chromium(report):
    done, _ = report
    driver = browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    try:
        driver.get(done["html"].resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        assert driver.find_elements(By.TAG_NAME, "b") == []
        table = driver.find_element(By.CSS_SELECTOR, "#report table.sortable")
        headers = [th.text.strip(" ↕↑↓") for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        column = headers.index("QLoRA ROUGE-1")

        def values():
            return [r.find_elements(By.TAG_NAME, "td")[column].text for r in table.find_elements(By.CSS_SELECTOR,
                                                                                                   "tbody tr")]

        before = values()
        means = [float(v.split()[0]) for v in before]
        assert means != sorted(means)  # the table's own order (Random first) is not the sorted one
        table.find_elements(By.CSS_SELECTOR, "thead th")[column].click()
        assert [float(v.split()[0]) for v in values()] == sorted(means)  # by the mean of "mean ± std [ci]"
        table.find_elements(By.CSS_SELECTOR, "thead th")[column].click()
        assert [float(v.split()[0]) for v in values()] == sorted(means, reverse=True)
        choose = Select(driver.find_element(By.ID, "selector-filter"))
        for selector in ("delift", "random"):
            choose.select_by_value(selector)
            shown = [p.get_attribute("data-selector") for p in driver.find_elements(By.CSS_SELECTOR, "section.job")
                     if p.is_displayed()]
            assert shown == [selector, selector]
            assert driver.find_element(By.ID, "filter-count").text == "2 jobs shown"
        choose.select_by_value("")
        assert sum(p.is_displayed() for p in driver.find_elements(By.CSS_SELECTOR, "section.job")) == 4
        assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
    finally:
        driver.quit()


def test_full_data_is_not_listed_pick_by_pick_and_initial_has_no_picks(tmp_path):
    sweep(tmp_path / "runs")
    every = [f"ex{i}" for i in range(8)]
    write_job(tmp_path / "runs", "full0", "full", 0, {"qlora/rouge1": 0.9, "subset/size": 8, "pool/size": 8},
              predictions=rows("qlora", {"rouge1": [0.9, 0.9]}), subset={"selected_ids": every, "pool_size": 8})
    write_job(tmp_path / "runs", "initial0", "initial", 0, {"qlora/rouge1": 0.0, "subset/size": 0, "pool/size": 8},
              predictions=rows("qlora", {"rouge1": [0.0, 0.0]}), subset={"pool_size": 8})
    page = build_report([tmp_path / "runs"], out=tmp_path / "r", draw=False)["html"].read_text()
    found = panels(Tree(page))
    assert found[("full", "0")].all("table") == [] and "every pool example (8): not listed" in found[("full", "0")].text()
    assert found[("initial", "0")].all("table") == [] and "no picks" in found[("initial", "0")].text()

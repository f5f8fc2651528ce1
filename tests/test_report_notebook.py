"""notebooks/results_overview.ipynb runs top to bottom (nbclient) on a tiny sweep of written job folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_support import rows, write_job

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "results_overview.ipynb"


def outputs(nb, kind: str) -> list[str]:
    return [str(o.get("data", {}).get(kind, "")) for cell in nb.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if kind in o.get("data", {})]


@pytest.mark.slow  # two Jupyter kernels (subprocesses), ~15 s on two cores
def test_notebook_shows_tables_and_figures_of_a_tiny_sweep(tmp_path):
    for budget in (0.25, 0.5):
        for seed in (0, 1):
            for selector, score in (("random", 0.3), ("delift", 0.4)):
                value = score + budget / 10 + seed / 100
                write_job(tmp_path / "sweep", f"{selector}_{budget}_{seed}", selector, seed,
                          {"qlora/bge": value, "subset/size": int(16 * budget), "pool/size": 16},
                          config={"budget_fraction": budget}, predictions=rows("qlora", {"bge": [value] * 3}))
    for seed in (0, 1):
        write_job(tmp_path / "sweep", f"full_{seed}", "full", seed, {"qlora/bge": 0.6, "subset/size": 16, "pool/size": 16},
                  config={"budget_fraction": 0.25}, predictions=rows("qlora", {"bge": [0.6] * 3}))
    results = tmp_path / "results"
    results.mkdir()
    (results / "legacy.md").write_text("| overrides | qlora/bge |\n|---|---|\n| seed=0 | 0.5000 |\n")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    params.source = f"SOURCE = {str(tmp_path / 'sweep')!r}\nOUT = {str(results / 'report')!r}\nNAME = None"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    markdown = "\n".join(outputs(nb, "text/markdown"))
    # (0.425 + 0.435) / 2 +- 12.7062 * 0.00707 / sqrt(2); every example is 0.1 above Random's: interval [0.1, 0.1]
    assert "| 0.25 | DELIFT | 2 | 0.4300 ± 0.0071 [0.3665, 0.4935] † |" in markdown
    assert "## Survey metrics (Liu et al. 2024)" in markdown
    images = outputs(nb, "image/png")
    figures = sorted(p.stem for p in (results / "report" / "figures").glob("*.png"))
    assert figures == ["bars_qlora_budget_fraction-0.25", "bars_qlora_budget_fraction-0.5", "budget_qlora",
                       "survey_qlora"] and len(images) == 4
    assert all(f"**report / {stem}**: " in markdown for stem in figures)
    assert "**report / budget_qlora**: QLoRA score against the budget fraction: seed mean, 95 % t-interval" in markdown

    # the report folder itself: its tables once (not again as "older flat tables")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    params.source = f"SOURCE = {str(results / 'report')!r}\nOUT = None\nNAME = None"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    markdown = "\n".join(outputs(nb, "text/markdown"))
    assert markdown.count("| 0.25 | DELIFT | 2 | 0.4300 ± 0.0071 [0.3665, 0.4935] † |") == 1
    assert markdown.count("## Survey metrics (Liu et al. 2024)") == 1

    # a folder of reports (results/): the report is found, and the flat tables beside it are shown
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    params.source = f"SOURCE = {str(results)!r}\nOUT = None\nNAME = None"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    markdown = "\n".join(outputs(nb, "text/markdown"))
    assert "### report\n# synth" in markdown and "### legacy" in markdown and "| seed=0 | 0.5000 |" in markdown
    assert len(outputs(nb, "image/png")) == 4

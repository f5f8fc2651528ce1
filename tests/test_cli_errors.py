"""One rule for a user's mistakes on the ``delift`` command line (issue 31): Hydra's own override errors, a
missing launcher plugin and an option in the user's own config folder all end in exit status 2 with one line
naming the key and the fix, no traceback; ``HYDRA_FULL_ERROR=1`` still shows Hydra's. Each case fails while
composing, before any model is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from delift.config.checks import ConfigError
from delift.config.loader import check_group_choices
from delift.run.hydra_errors import translate

ROOT = Path(__file__).resolve().parents[1]


def delift(tmp_path: Path, *arguments: str, flags: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess:
    experiment = [] if any(a.startswith("experiment=") for a in arguments) else ["experiment=smoke"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "delift", *flags, *experiment, *arguments,
                           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


OVERRIDE_ERRORS = [
    (["kernel.max_lenght=3"], "delift: kernel.max_lenght: unknown config key. Did you mean kernel.max_length?"),
    (["kernel.knn.neighbours=3"], "delift: kernel.knn.neighbours: unknown config key. Did you mean "
                                  "kernel.knn.neighbors?"),
    (["budget_fraction=true"], "delift: budget_fraction=true: expected a number (default 0.3)"),
    (["budget_fraction=abc"], "delift: budget_fraction=abc: expected a number (default 0.3)"),
    (["seed=abc"], "delift: seed=abc: expected a whole number (default 0)"),
    (["kernel.block_size=1e9"], "delift: kernel.block_size=1e9: expected a whole number (default 256)"),
    (["kernel.knn.neighbors=abc"], "delift: kernel.knn.neighbors=abc: expected a whole number (default 20)"),
    (["scorer=smollm2_135m", "scorer.dtype=float32"],
     "choose it as a block to set them: +model@scorer=smollm2_135m scorer.dtype=float32"),
    (["hydra/launcher=ray_local"], "delift: hydra/launcher=ray_local: the Hydra launcher plugin it needs is not "
                                   "installed; pip install hydra-ray-launcher"),
    (["hydra/launcher=joblb"], "delift: hydra/launcher: unknown hydra/launcher option 'joblb'. Did you mean "
                               "'joblib'?"),
    (["selector=random,"], "delift: cannot parse the override 'selector=random,'"),
]


@pytest.mark.parametrize("arguments,message", OVERRIDE_ERRORS, ids=[" ".join(a) for a, _ in OVERRIDE_ERRORS])
def test_hydra_override_errors_exit_2_with_one_line_naming_the_key_and_the_fix(tmp_path, arguments, message):
    if "ray_local" in arguments[0]:
        pytest.importorskip("hydra_plugins")
        try:
            __import__("hydra_plugins.hydra_ray_launcher")
            pytest.skip("the Ray launcher is installed here")
        except ImportError:
            pass
    done = delift(tmp_path, *arguments)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no Hydra advice such as "+key"
    assert not (tmp_path / "run").exists()  # nothing was written


def test_hydra_full_error_still_shows_hydras_traceback(tmp_path):
    done = delift(tmp_path, "kernel.max_lenght=3", HYDRA_FULL_ERROR="1")
    assert done.returncode == 1 and "Traceback" in done.stderr and "ConfigCompositionException" in done.stderr


def test_translate_leaves_other_errors_alone():
    assert translate(ValueError("boom"), []) is None


def own_config_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "my_conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - smoke\nname: mine\n")
    (conf / "selector").mkdir()
    (conf / "selector" / "my_random.yaml").write_text((ROOT / "conf" / "selector" / "random.yaml").read_text())
    return conf


def test_options_in_the_users_config_dir_and_search_path_are_found(tmp_path):
    conf = own_config_dir(tmp_path)
    for arguments in (["--config-dir", str(conf), "experiment=mine"], [f"-cd={conf}", "experiment=mine"],
                      [f"hydra.searchpath=[file://{conf}]", "experiment=mine", "selector=my_random,random"],
                      [f"hydra.searchpath=[{conf}]", "selector=my_random"]):
        check_group_choices(arguments)  # no error
    with pytest.raises(ConfigError, match="unknown experiment option 'mine'"):
        check_group_choices(["experiment=mine"])  # not in the packaged conf/


def test_a_primary_configs_own_search_path_is_searched(tmp_path):
    conf = own_config_dir(tmp_path)
    primary = tmp_path / "primary"
    primary.mkdir()
    (primary / "mine.yaml").write_text(f"defaults:\n  - config\nhydra:\n  searchpath: [file://{conf}]\n")
    check_group_choices(["--config-dir", str(primary), "--config-name", "mine", "selector=my_random"])
    with pytest.raises(ConfigError, match="Did you mean 'my_random'"):
        check_group_choices(["--config-dir", str(primary), "--config-name", "mine", "selector=my_randon"])


def test_a_typo_in_an_own_experiment_gets_a_did_you_mean_naming_it(tmp_path):
    conf = own_config_dir(tmp_path)
    done = delift(tmp_path, "experiment=mien", flags=("--config-dir", str(conf)))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "experiment: unknown experiment option 'mien'. Did you mean 'mine'?" in done.stderr


@pytest.mark.slow
def test_an_experiment_in_the_users_config_dir_runs(tmp_path):
    conf = own_config_dir(tmp_path)
    done = delift(tmp_path, "experiment=mine", "selector=my_random", "progress=false", flags=("--config-dir", str(conf)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "subset.json").is_file()
    assert not (tmp_path / "run" / "run.lock").exists()  # released when the run ended
    assert json.loads((tmp_path / "run" / "run.json").read_text())["name"] == "mine"

"""Data files that are not what their name says: each error names the file and the real cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from delift.data import load_examples, load_splits
from delift.data.records import DataFileError, DataFormatError

ALPACA = [{"instruction": f"Say {i}", "input": "", "output": f"hi {i}"} for i in range(3)]


def config(path: Path, fmt: str = "alpaca", **extra) -> dict:
    return {"name": "probe", "format": fmt, "local_path": str(path), **extra}


def message_of(error: type[Exception], path: Path, fmt: str = "alpaca", **extra) -> str:
    with pytest.raises(error) as caught:
        load_examples(config(path, fmt, **extra))
    return str(caught.value)


@pytest.mark.parametrize("name,body,cause", [
    ("empty.jsonl", "", "is empty (0 bytes)"),
    ("empty.json", "", "is empty (0 bytes)"),
    ("empty.csv", "", "is empty (0 bytes)"),
    ("blank.jsonl", "\n\n  \n", "holds only whitespace (5 bytes)"),
    ("header.csv", "instruction,input,output\n", "holds a header row but no data rows"),
    ("array.json", "[]", "holds no rows"),
])
def test_a_file_without_rows_is_named_before_the_split_sizes(tmp_path, name, body, cause):
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(DataFileError) as caught:
        load_splits(config(path, sizes={"train": 16, "valid": 0, "test": 0}), seed=0)
    assert str(caught.value) == f"{path}: {cause}"


def test_a_gsm8k_file_read_as_alpaca_says_every_row_was_skipped_and_why(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i}+1?", "answer": f"#### {i + 1}"}) + "\n"
                            for i in range(5)))
    message = message_of(DataFileError, path, on_bad_row="skip")
    assert message.startswith(f"{path}: all 5 rows were skipped as bad (data.on_bad_row=skip); 5 of them for "
                              "field 'output': missing required field (row has ['answer', 'question'])"), message
    assert f"(first: {path}:1)" in message
    assert "data.format=alpaca expects the fields output, instruction, input" in message
    assert load_examples(config(path, "gsm8k", on_bad_row="skip"))  # the right format reads it


def test_some_bad_rows_are_still_only_skipped(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [ALPACA[0], {"question": "q"}]))
    assert [ex.output for ex in load_examples(config(path, on_bad_row="skip"))] == ["hi 0"]


@pytest.mark.parametrize("indent", [None, 2], ids=["one-line", "pretty"])
def test_a_json_array_saved_as_jsonl_gets_a_rename_hint(tmp_path, indent):
    path = tmp_path / "alpaca.jsonl"
    path.write_text(json.dumps(ALPACA, indent=indent))
    message = message_of(DataFormatError, path)
    assert message.startswith(f"{path}:1: field '<row>': ")
    assert message.endswith("the file looks like one JSON array, not JSON lines: rename it to .json"), message
    renamed = path.rename(tmp_path / "alpaca.json")
    assert [ex.output for ex in load_examples(config(renamed))] == ["hi 0", "hi 1", "hi 2"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_parquet_file_with_a_text_suffix_is_named_parquet(tmp_path, suffix):
    path = tmp_path / f"alpaca{suffix}"
    pq.write_table(pa.Table.from_pylist(ALPACA), path)
    message = message_of(DataFileError, path)
    assert message == (f"{path}: is a Parquet file (it starts with b'PAR1'), not {suffix[1:].upper()} text: "
                       "rename it to .parquet")
    assert "iconv" not in message
    renamed = path.rename(tmp_path / "alpaca.parquet")
    assert len(load_examples(config(renamed))) == 3


def test_a_symlink_loop_is_not_called_missing(tmp_path):
    loop = tmp_path / "loop.jsonl"
    os.symlink(loop, loop)
    message = message_of(FileNotFoundError, loop)
    assert message == f"data.local_path {loop} is a symlink loop (it points back to itself through {str(loop)!r}); " \
                      "point it at the real file"
    dangling = tmp_path / "dangling.jsonl"
    os.symlink(tmp_path / "gone.jsonl", dangling)
    assert "is a dangling symlink to" in message_of(FileNotFoundError, dangling)


def test_the_cli_reports_a_bad_data_file_without_a_traceback_exit_2(tmp_path):
    empty = tmp_path / "alpaca.jsonl"
    empty.write_text("")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "delift", "experiment=smoke", "data=alpaca",
                           f"data.local_path={empty}", f"paths.cache_dir={tmp_path / 'cache'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert f"{empty}: is empty (0 bytes)" in output and "Traceback" not in output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["error"].startswith("DataFileError")

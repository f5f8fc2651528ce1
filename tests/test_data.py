"""Data layer: readers, formatters (original schemas), splits, synthetic data, config loading."""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from delift.data import (
    FORMATTERS,
    DataFormatError,
    Example,
    HubSource,
    data_config,
    generate_synthetic,
    get_formatter,
    iter_rows,
    load_examples,
    load_splits,
    make_splits,
)
from delift.data.config import DataConfig, SizesConfig
from delift.data.records import GENERATED as GENERATED_FORMATS
from delift.data.records import row_index

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DELIFT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))

ALPACA = [
    {"instruction": "Give a synonym of happy.", "input": "", "output": "Joyful."},
    {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
    {"instruction": "Translate to French.", "input": "cat, dog", "output": "chat, chien"},
]
DOLLY = [
    {"instruction": "Who wrote Hamlet?", "context": "", "response": "Shakespeare.",
     "category": "open_qa"},
    {"instruction": "Summarise.", "context": "A long text.", "response": "Short.",
     "category": "summarization"},
]
MIXINSTRUCT = [
    {"id": "unified_chip2/1", "instruction": "", "input": "Name a fruit.", "output": "Apple.",
     "candidates": [{"decoding_method": "top_p", "model": "m1", "scores": {"bleu": 0.1},
                     "text": "Pear."}, {"decoding_method": "top_p", "model": "m2",
                                        "scores": {}, "text": "Plum."}]},
    {"id": "laion/2", "instruction": "Fix the grammar.", "input": "he go home",
     "output": "He goes home.", "candidates": []},
]
GSM8K = [
    {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"},
    {"question": "Half of 1,000?", "answer": "1000/2=500\n#### 500"},
]
MMLU_LOCAL = [
    {"question": "2+2?", "choice0": "3", "choice1": "4", "choice2": "5", "choice3": "6",
     "answer": 1, "subject": "elementary_mathematics"},
    {"question": "Capital of Italy?", "choice0": "Rome", "choice1": "Oslo", "choice2": "Lima",
     "choice3": "Bern", "answer": 0, "subject": "geography"},
]
MMLU_HUB = [{"question": "Largest planet?", "subject": "astronomy",
             "choices": ["Mars", "Venus", "Earth", "Jupiter"], "answer": 3}]
SQUAD_LOCAL = [
    {"id": "q1", "title": "Rivers", "context": "The Nile is long.", "question": "What is long?",
     "answers": [{"text": "The Nile"}, {"text": "Nile"}]},
    {"id": "q2", "title": "Rivers", "context": "Rain falls.", "question": "What falls?",
     "answers": [{"text": "Rain"}]},
]
SQUAD_HUB = [{"id": "h1", "title": "Sky", "context": "The sky is blue.", "question": "Colour?",
              "answers": {"text": ["blue", "blue"], "answer_start": [11, 11]}}]
P3 = [{"prompt": "Is 3 odd?\n", "completion": " yes<|endoftext|>", "template": "odd_yes_no"},
      {"prompt": "Is 4 odd?", "completion": "no", "template": "odd_yes_no"}]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def load(path: Path, fmt: str, **extra: Any) -> list[Example]:
    return load_examples({"name": fmt, "format": fmt, "local_path": str(path), **extra})


def fields(example: Example) -> tuple[str, str, str, str, str, dict[str, Any]]:
    return (example.id, example.instruction, example.input, example.output, example.source,
            example.metadata)


# ---------------------------------------------------------------- formatters, exact values

EXPECTED = {
    "alpaca": (ALPACA, [
        ("alpaca-0", "Give a synonym of happy.", "", "Joyful.", "alpaca", {}),
        ("alpaca-1", "Add the numbers.", "2, 3", "5", "alpaca", {}),
        ("alpaca-2", "Translate to French.", "cat, dog", "chat, chien", "alpaca", {}),
    ]),
    "dolly": (DOLLY, [
        ("dolly-0", "Who wrote Hamlet?", "", "Shakespeare.", "dolly", {"category": "open_qa"}),
        ("dolly-1", "Summarise.", "A long text.", "Short.", "dolly",
         {"category": "summarization"}),
    ]),
    "mixinstruct": (MIXINSTRUCT, [
        ("unified_chip2/1", "Name a fruit.", "", "Apple.", "mixinstruct", {"num_candidates": 2}),
        ("laion/2", "Fix the grammar.", "he go home", "He goes home.", "mixinstruct",
         {"num_candidates": 0}),
    ]),
    "gsm8k": (GSM8K, [
        ("gsm8k-0", GSM8K[0]["question"], "", GSM8K[0]["answer"], "gsm8k", {"final_answer": "5"}),
        ("gsm8k-1", "Half of 1,000?", "", "1000/2=500\n#### 500", "gsm8k",
         {"final_answer": "500"}),
    ]),
    "mmlu": (MMLU_LOCAL + MMLU_HUB, [
        ("mmlu-0", "2+2?", "A. 3\nB. 4\nC. 5\nD. 6", "B. 4", "mmlu",
         {"answer_index": 1, "answer_letter": "B", "choices": ["3", "4", "5", "6"],
          "subject": "elementary_mathematics"}),
        ("mmlu-1", "Capital of Italy?", "A. Rome\nB. Oslo\nC. Lima\nD. Bern", "A. Rome", "mmlu",
         {"answer_index": 0, "answer_letter": "A", "choices": ["Rome", "Oslo", "Lima", "Bern"],
          "subject": "geography"}),
        ("mmlu-2", "Largest planet?", "A. Mars\nB. Venus\nC. Earth\nD. Jupiter", "D. Jupiter",
         "mmlu", {"answer_index": 3, "answer_letter": "D",
                  "choices": ["Mars", "Venus", "Earth", "Jupiter"], "subject": "astronomy"}),
    ]),
    "squad": (SQUAD_LOCAL + SQUAD_HUB, [
        ("q1", "What is long?", "The Nile is long.", "The Nile", "squad",
         {"answers": ["The Nile", "Nile"], "title": "Rivers"}),
        ("q2", "What falls?", "Rain falls.", "Rain", "squad", {"answers": ["Rain"],
                                                               "title": "Rivers"}),
        ("h1", "Colour?", "The sky is blue.", "blue", "squad",
         {"answers": ["blue", "blue"], "title": "Sky", "answer_starts": [11, 11]}),
    ]),
    "p3": (P3, [("p3-0", "Is 3 odd?", "", "yes", "p3", {"template": "odd_yes_no"}),
                ("p3-1", "Is 4 odd?", "", "no", "p3", {"template": "odd_yes_no"})]),
}


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_formatter_exact_values(tmp_path: Path, fmt: str) -> None:
    rows, expected = EXPECTED[fmt]
    examples = load(write_jsonl(tmp_path / f"{fmt}.jsonl", rows), fmt)
    assert [fields(ex) for ex in examples] == expected


MISSING = {"alpaca": "output", "dolly": "response", "mixinstruct": "output", "gsm8k": "answer",
           "mmlu": "choice2", "squad": "answers", "p3": "prompt"}


@pytest.mark.parametrize("fmt", sorted(MISSING))
def test_formatter_missing_field_names_file_line_field(tmp_path: Path, fmt: str) -> None:
    rows = [dict(row) for row in EXPECTED[fmt][0][:2]]
    del rows[1][MISSING[fmt]]
    path = write_jsonl(tmp_path / f"{fmt}.jsonl", rows)
    with pytest.raises(DataFormatError) as info:
        load(path, fmt)
    assert f"{path}:2" in str(info.value) and f"'{MISSING[fmt]}'" in str(info.value)
    assert info.value.field == MISSING[fmt]


@pytest.mark.parametrize("row, field, problem", [
    ({"instruction": "x", "input": "", "output": 3}, "output", "expected a string, got int"),
    ({"instruction": "x", "input": "", "output": "  "}, "output", "must not be empty"),
    ({"instruction": "x", "input": None, "output": "y"}, "input", "expected a string"),
])
def test_wrong_type_and_empty_output(tmp_path: Path, row: dict, field: str, problem: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA[0], row])
    with pytest.raises(DataFormatError, match=f"a.jsonl:2: field '{field}': {problem}"):
        load(path, "alpaca")


@pytest.mark.parametrize("fmt, row, field", [
    ("mmlu", {**MMLU_LOCAL[0], "answer": 4}, "answer"),
    ("mmlu", {**MMLU_HUB[0], "answer": -1}, "answer"),
    ("squad", {**SQUAD_LOCAL[0], "answers": []}, "answers"),
    ("squad", {**SQUAD_HUB[0], "answers": {"text": [], "answer_start": []}}, "answers"),
    ("gsm8k", {"question": "q", "answer": "no marker"}, "answer"),
])
def test_dataset_specific_errors(tmp_path: Path, fmt: str, row: dict, field: str) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [row])
    with pytest.raises(DataFormatError, match=f"x.jsonl:1: field '{field}'"):
        load(path, fmt)


def test_mmlu_accepts_digit_and_letter_answers_from_csv_style_rows() -> None:
    formatter = get_formatter("mmlu")
    assert formatter({**MMLU_LOCAL[0], "answer": "1"}, "f.csv:2").output == "B. 4"
    assert formatter({**MMLU_LOCAL[0], "answer": "c"}, "f.csv:2").output == "C. 5"


def test_unknown_formatter_did_you_mean() -> None:
    with pytest.raises(ValueError, match="unknown format 'alpacca'; did you mean 'alpaca'\\? "
                                         "known: alpaca, dolly"):
        get_formatter("alpacca")
    with pytest.raises(ValueError, match="unknown format 'sqad'; did you mean 'squad'"):
        load_examples({"name": "x", "format": "sqad", "local_path": "unused.jsonl"})


# ---------------------------------------------------------------- readers

def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n\n{\"instruction\": oops}\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="bad.jsonl:3: field '<row>': invalid JSON") as info:
        list(iter_rows(path))
    assert pickle.loads(pickle.dumps(info.value)).args == info.value.args


def test_all_file_formats_give_same_examples(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    reference = load(write_jsonl(tmp_path / "a.jsonl", ALPACA), "alpaca")
    blank = tmp_path / "blank.jsonl"  # blank lines must not shift ids
    blank.write_text("\n" + "\n\n".join(json.dumps(row) for row in ALPACA), encoding="utf-8")
    array = tmp_path / "a.json"
    array.write_text(json.dumps(ALPACA, indent=2), encoding="utf-8")
    lines_json = write_jsonl(tmp_path / "lines.json", ALPACA)
    with (tmp_path / "a.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(ALPACA)
    pq.write_table(pa.Table.from_pylist(ALPACA), tmp_path / "a.parquet")
    for path in (blank, array, lines_json, tmp_path / "a.csv", tmp_path / "a.parquet"):
        examples = load(path, "alpaca")
        assert [fields(ex) for ex in examples] == [fields(ex) for ex in reference], path
    locations = [loc for loc, _ in iter_rows(tmp_path / "a.parquet")]
    assert locations == [f"{tmp_path / 'a.parquet'}#{i}" for i in range(3)]
    assert [loc for loc, _ in iter_rows(blank)][1] == f"{blank}:4"


def test_csv_short_row_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('instruction,input,output\n"Say hi","",hi\n"Say bye",""\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="a.csv:3: field 'output': missing required"):
        load(path, "alpaca")


def test_max_rows_and_row_index(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    assert len(list(iter_rows(path, max_rows=2))) == 2
    assert len(load(path, "alpaca", max_rows=1)) == 1
    assert (row_index("x.jsonl:5"), row_index("hub[train]#5")) == (4, 5)


def test_hub_and_save_to_disk_paths_without_network(tmp_path: Path, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls: list[tuple] = []

    def fake_load_dataset(hub_id, config, split, revision):
        calls.append((hub_id, config, split, revision))
        return datasets.Dataset.from_list(MMLU_HUB * 2)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = {"name": "mmlu", "format": "mmlu", "hub_id": "cais/mmlu", "hub_config": "all",
           "hub_split": "test", "revision": None, "local_path": None}
    examples = load_examples(cfg)
    assert calls == [("cais/mmlu", "all", "test", None)]
    assert [ex.output for ex in examples] == ["D. Jupiter"] * 2
    locations = [loc for loc, _ in iter_rows(HubSource("cais/mmlu", "test", "all"))]
    assert locations == ["cais/mmlu[all:test]#0", "cais/mmlu[all:test]#1"]

    datasets.DatasetDict({"train": datasets.Dataset.from_list(ALPACA)}).save_to_disk(
        str(tmp_path / "saved"))
    saved = load_examples({"format": "alpaca", "local_path": str(tmp_path / "saved"),
                           "hub_split": "train"})
    assert [ex.output for ex in saved] == [row["output"] for row in ALPACA]


def test_missing_local_path_and_skip_policy(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.local_path .*nope.jsonl"):
        load(tmp_path / "nope.jsonl", "alpaca")
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA[0], {**ALPACA[1], "output": ""}, ALPACA[2]])
    kept = load(path, "alpaca", on_bad_row="skip")
    assert [ex.id for ex in kept] == ["alpaca-0", "alpaca-2"]


@pytest.mark.parametrize("suffix, line", [(".jsonl", 3), (".json", 15), (".csv", 4)])
def test_not_utf8_names_file_line_and_byte(tmp_path: Path, suffix: str, line: int) -> None:
    rows = [{**ALPACA[0], "input": "x" * 10_000}, ALPACA[1], {**ALPACA[2], "output": "chat, chién"}]
    path = tmp_path / f"latin1{suffix}"  # the 3rd row's 'é' is one Latin-1 byte, past the decoder's first chunk
    if suffix == ".csv":
        with path.open("w", newline="", encoding="latin-1") as handle:
            writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output"])
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".json":
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="latin-1")
    else:
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="latin-1")
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(DataFormatError) as info:
        load(path, "alpaca")
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: field '<row>': not valid UTF-8"), message
    assert f"byte 0xe9 at byte offset {offset} of the file" in message and "re-encode the file as UTF-8" in message


def test_typed_data_config_or_mapping_give_the_same_data(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    typed = DataConfig(name="alpaca", format="alpaca", local_path=str(path),
                       sizes=SizesConfig(train=2, valid=0, test=1))
    mapping = {"format": "alpaca", "local_path": str(path), "sizes": {"train": 2, "valid": 0, "test": 1}}
    assert data_config(mapping) == data_config(OmegaConf.create(mapping)) == typed  # name defaults to format
    assert data_config(typed) is typed
    splits = load_splits(typed, seed=0)
    assert splits == load_splits(mapping, seed=0) and splits.source == load_splits(mapping, seed=0).source
    assert [fields(ex) for ex in load_examples(typed)] == [fields(ex) for ex in load_examples(mapping)]
    with pytest.raises(ValueError, match=r"data\.format is required"):
        load_examples({"local_path": str(path)})


@pytest.mark.parametrize("extra, message", [
    ({"max_rowz": 1}, r"data\.max_rowz: unknown key; did you mean 'max_rows'"),
    ({"sizes": {"train": 1, "tset": 1}}, r"data\.sizes\.tset: unknown key; did you mean 'test'"),
    ({"max_rows": "many"}, r"data\.max_rows: Value 'many' of type 'str' could not be converted to Integer"),
    ({"format": None}, r"data\.format: "),
    ({"row_filter": {"include": ["a"]}}, r"data\.row_filter\.key is required"),
])
def test_bad_data_config_mapping_names_the_key(tmp_path: Path, extra: dict, message: str) -> None:
    cfg = {"name": "a", "format": "alpaca", "local_path": str(write_jsonl(tmp_path / "a.jsonl", ALPACA)), **extra}
    with pytest.raises(ValueError, match=message):
        load_examples(cfg)


# ---------------------------------------------------------------- splits

def test_splits_seeded_disjoint_deterministic() -> None:
    examples = generate_synthetic(50, seed=1)
    sizes = {"train": 20, "valid": 5, "test": 10}
    first, again, other = (make_splits(examples, sizes, s) for s in (7, 7, 8))
    assert first == again and first != other
    ids = [ex.id for part in (first.train, first.valid, first.test) for ex in part]
    assert len(ids) == len(set(ids)) == 35 and first.sizes == sizes
    rest = make_splits(examples, {"train": None, "valid": 0, "test": 10}, 7)
    assert rest.sizes == {"train": 40, "valid": 0, "test": 10}


def test_split_size_errors() -> None:
    examples = generate_synthetic(30, seed=1)
    with pytest.raises(ValueError, match=r"data\.sizes\.test=20 but only 10 of 30"):
        make_splits(examples, {"train": 20, "valid": 0, "test": 20}, 0)
    with pytest.raises(ValueError, match="at most one"):
        make_splits(examples, {"train": None, "valid": 0, "test": None}, 0)
    with pytest.raises(DataFormatError, match="field 'id': duplicate id 'synth-0000'"):
        make_splits(examples + examples[:1], {"train": 5}, 0)


def test_sizes_beyond_the_loaded_examples_name_the_data_and_counts(tmp_path: Path) -> None:
    cfg = {"name": "tiny_alpaca", "format": "alpaca", "local_path": str(write_jsonl(tmp_path / "a.jsonl", ALPACA)),
           "sizes": {"train": 2, "valid": 0, "test": 5}}
    with pytest.raises(ValueError, match=r"data 'tiny_alpaca': data\.sizes\.test=5 but only 1 of 3 examples remain"):
        load_splits(cfg, seed=0)


# ---------------------------------------------------------------- synthetic

def test_synthetic_deterministic_and_seeded() -> None:
    first = generate_synthetic(200, seed=3)
    assert [fields(ex) for ex in first] == [fields(ex) for ex in generate_synthetic(200, seed=3)]
    assert [ex.instruction for ex in first] != [ex.instruction for ex in
                                                generate_synthetic(200, seed=4)]
    assert [ex.id for ex in first[:2]] == ["synth-0000", "synth-0001"]
    assert {ex.source for ex in first} == {"synthetic"}
    assert len({ex.metadata["family"] for ex in first}) >= 6
    assert all(ex.output.strip() and ex.instruction.strip() for ex in first)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5])
def test_synthetic_near_duplicates(rate: float) -> None:
    examples = generate_synthetic(400, seed=0, near_duplicate_rate=rate)
    position = {ex.id: i for i, ex in enumerate(examples)}
    dups = [ex for ex in examples if "near_duplicate_of" in ex.metadata]
    assert abs(len(dups) / len(examples) - rate) < 0.01
    for dup in dups:
        base = examples[position[dup.metadata["near_duplicate_of"]]]
        assert position[base.id] < position[dup.id] and "near_duplicate_of" not in base.metadata
        assert base.output == dup.output and base.metadata["family"] == dup.metadata["family"]
        assert (base.instruction, base.input) != (dup.instruction, dup.input)


# ---------------------------------------------------------------- configs and real data

def test_conf_data_yamls_are_typed_data_configs_and_quickstart_loads() -> None:
    """Every conf/data YAML merges into DataConfig (it sets only keys the schema has), names itself, reads no
    local file by default and names a known format; the quickstart loads with its sizes."""
    raw = {p.stem: OmegaConf.load(p) for p in sorted((REPO / "conf" / "data").glob("*.yaml"))}
    expected = {"quickstart", "alpaca", "dolly", "mixinstruct", "gsm8k", "mmlu", "squad", "p3", "hotpotqa",
                "mt_bench", "structured"}
    assert expected <= set(raw)
    configs = {stem: OmegaConf.merge(OmegaConf.structured(DataConfig), cfg) for stem, cfg in raw.items()}
    for stem, cfg in configs.items():
        assert cfg.local_path is None and cfg.name == stem
        assert cfg.format in GENERATED_FORMATS or cfg.format in FORMATTERS
    splits = load_splits(configs["quickstart"], seed=0)
    assert splits.sizes == dict(configs["quickstart"].sizes)
    assert sum(splits.sizes.values()) <= configs["quickstart"].synthetic.n
    assert load_splits(configs["quickstart"], seed=0) == splits


REAL = [("alpaca", "alpaca/train.jsonl"), ("dolly", "dolly/train.jsonl"),
        ("gsm8k", "gsm8k/train.jsonl"), ("mmlu", "mmlu/test.jsonl"), ("squad", "squad/dev.jsonl"),
        ("p3", "p3/t0_train_sample.jsonl"), ("mmlu", "mmlu/dev.jsonl"),
        ("hotpotqa", "hotpotqa/dev_distractor_first53.jsonl"),
        ("hotpotqa", "hotpotqa/dev_explorer_sample100.jsonl"), ("hotpotqa", "hotpotqa/dev_simplified.jsonl")]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared datasets at {SHARED}")
@pytest.mark.parametrize("fmt, relpath", REAL)
def test_real_local_copies_first_rows(fmt: str, relpath: str) -> None:
    cfg = OmegaConf.create({"name": fmt, "format": fmt, "hub_id": None,
                            "local_path": str(SHARED / relpath), "max_rows": 20})
    examples = load_examples(cfg)
    assert len(examples) == 20 and len({ex.id for ex in examples}) == 20
    assert all(ex.source == fmt and ex.output.strip() for ex in examples)


def test_near_duplicates_stay_in_the_split_of_their_original():
    from delift.data.splits import near_duplicate_groups

    examples = generate_synthetic(60, seed=0, near_duplicate_rate=0.3)
    groups = near_duplicate_groups(examples)
    assert len(set(groups)) < len(examples)  # the data really has groups
    for seed in range(5):
        splits = make_splits(examples, {"train": 40, "valid": 0, "test": 20}, seed)
        assert splits.sizes == {"train": 40, "valid": 0, "test": 20}
        side = {ex.id: name for name in ("train", "test") for ex in getattr(splits, name)}
        for ex, group in zip(examples, groups):
            assert side[ex.id] == side[group], (ex.id, group)


def test_groups_that_cannot_fit_are_an_error():
    base = Example("a", "Say hi.", "", "hi", "t")
    copies = [base] + [Example(f"a{i}", "Say hi!", "", "hi", "t", {"near_duplicate_of": "a"}) for i in range(2)]
    with pytest.raises(ValueError, match="near-duplicate groups"):
        make_splits(copies, {"train": 2, "valid": 0, "test": 1}, seed=0)

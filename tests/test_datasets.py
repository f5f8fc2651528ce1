"""Every dataset the paper names: formatters (HotpotQA, MT-Bench, P3, MixInstruct), offline copies,
packaged fixtures, source resolution (incl. nested data configs) and decontamination."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from delift.cli import CONFIG_DIR
from delift.data import (
    FIXTURES_DIR,
    P3_HOTPOTQA_TEMPLATES,
    DataFormatError,
    Example,
    data_config,
    decontaminate,
    is_fixture,
    load_examples,
    load_splits,
    normalise,
    resolve_source,
)
from delift.data.config import DataConfig
from delift.data.records import GENERATED as GENERATED_FORMATS

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DELIFT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
CONF_DATA = REPO / "conf" / "data"

HOTPOT_OFFICIAL = {
    "_id": "h1", "question": "Which river runs past the town where Ada was born?", "answer": "Tamar",
    "type": "bridge", "level": "hard", "supporting_facts": [["Ada Lane", 1], ["Calstock", 0]],
    "context": [["Decoy", ["A decoy paragraph."]], ["Calstock", ["Calstock is a village.", " It lies on the Tamar."]],
                ["Ada Lane", ["Ada Lane was a poet.", " She was born in Calstock."]]]}
HOTPOT_HUB = {
    "id": "h2", "question": "Are both towns in Devon?", "answer": "no", "type": "comparison", "level": "easy",
    "supporting_facts": {"title": ["Bude", "Brixham", "Bude"], "sent_id": [0, 0, 1]},
    "context": {"title": ["Brixham", "Other", "Bude"],
                "sentences": [["Brixham is in Devon."], ["Noise."], ["Bude is in Cornwall.", "It has a canal."]]}}
HOTPOT_WEBSITE = {
    "_id": "h3", "title_a": "Tor", "title_b": "Moor", "para_a": ["Tor is a hill.", " It is granite."],
    "para_b": ["Moor is open land."], "question": "What is Tor made of?", "answer": "granite",
    "supporting_facts": [[1], [0]], "distractors": [["Noise", ["Not used."]]]}
HOTPOT_SIMPLE = {"question": "Who wrote the poem?", "answer": "Ada Lane", "type": "bridge"}

MT_FASTCHAT = {"question_id": 111, "category": "math", "turns": ["What is 2 + 2?", "And times 3?"],
               "reference": ["4", "12"]}
MT_NO_REF = {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]}
MT_HUB = {"prompt_id": 5551, "category": "reasoning", "prompt": ["Is 7 prime?", "Is 9?"], "reference": ["Yes."]}
MT_HUB_NO_REF = {"prompt_id": 5552, "category": "roleplay", "prompt": ["Be a pirate.", "Again."], "reference": []}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def load(path: Path, fmt: str, **extra: Any) -> list[Example]:
    return load_examples({"name": fmt, "format": fmt, "local_path": str(path), **extra})


def fields(ex: Example) -> tuple:
    return ex.id, ex.instruction, ex.input, ex.output, ex.source, ex.metadata


# ---------------------------------------------------------------- HotpotQA

def test_hotpotqa_all_four_schemas_exact(tmp_path: Path) -> None:
    rows = [HOTPOT_OFFICIAL, HOTPOT_HUB, HOTPOT_WEBSITE, HOTPOT_SIMPLE]
    examples = load(write_jsonl(tmp_path / "h.jsonl", rows), "hotpotqa")
    assert [fields(ex) for ex in examples] == [
        ("h1", HOTPOT_OFFICIAL["question"],
         "Calstock: Calstock is a village. It lies on the Tamar.\n\nAda Lane: Ada Lane was a poet. She was born in Calstock.",
         "Tamar", "hotpotqa", {"schema": "distractor", "gold_titles": ["Calstock", "Ada Lane"], "type": "bridge",
                               "level": "hard"}),
        ("h2", "Are both towns in Devon?", "Brixham: Brixham is in Devon.\n\nBude: Bude is in Cornwall. It has a canal.",
         "no", "hotpotqa", {"schema": "distractor", "gold_titles": ["Brixham", "Bude"], "type": "comparison",
                            "level": "easy"}),
        ("h3", "What is Tor made of?", "Tor: Tor is a hill. It is granite.\n\nMoor: Moor is open land.", "granite",
         "hotpotqa", {"schema": "website", "gold_titles": ["Tor", "Moor"]}),
        ("hotpotqa-3", "Who wrote the poem?", "", "Ada Lane", "hotpotqa",
         {"schema": "simplified", "gold_titles": [], "type": "bridge"}),
    ]


@pytest.mark.parametrize("row, field", [
    ({**HOTPOT_OFFICIAL, "supporting_facts": [["Nowhere", 0]]}, "supporting_facts"),
    ({**HOTPOT_OFFICIAL, "context": "text"}, "context"),
    ({**HOTPOT_WEBSITE, "para_b": "not a list"}, "para_b"),
    ({k: v for k, v in HOTPOT_SIMPLE.items() if k != "answer"}, "answer"),
    ({k: v for k, v in HOTPOT_OFFICIAL.items() if k != "context"}, "context"),
])
def test_hotpotqa_bad_row_names_file_line_field(tmp_path: Path, row: dict, field: str) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", [HOTPOT_SIMPLE, row])
    with pytest.raises(DataFormatError, match=f"h.jsonl:2: field '{field}'") as info:
        load(path, "hotpotqa")
    assert info.value.field == field


# ---------------------------------------------------------------- MT-Bench

def test_mt_bench_fastchat_and_hub_schema_exact(tmp_path: Path) -> None:
    examples = load(write_jsonl(tmp_path / "q.jsonl", [MT_FASTCHAT, MT_HUB]), "mt_bench")
    assert [fields(ex) for ex in examples] == [
        ("111", "What is 2 + 2?", "", "4", "mt_bench",
         {"question_id": 111, "category": "math", "second_turn": "And times 3?", "references": ["4", "12"]}),
        ("5551", "Is 7 prime?", "", "Yes.", "mt_bench",
         {"question_id": 5551, "category": "reasoning", "second_turn": "Is 9?", "references": ["Yes."]}),
    ]


def test_mt_bench_without_reference_is_an_error_or_a_counted_skip(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [MT_FASTCHAT, MT_NO_REF, MT_HUB_NO_REF, MT_HUB])
    with pytest.raises(DataFormatError, match="q.jsonl:2: field 'reference': no reference answer .'writing' question 81"):
        load(path, "mt_bench")
    cfg = {"name": "mt", "format": "mt_bench", "local_path": str(path), "on_bad_row": "skip",
           "sizes": {"train": 1, "valid": 0, "test": 1}}
    splits = load_splits(cfg, seed=0)
    assert sorted(ex.id for ex in splits.train + splits.test) == ["111", "5551"]
    assert splits.source["skipped_bad_rows"] == 2 and splits.source["skipped_by_field"] == {"reference": 2}


@pytest.mark.parametrize("row, field", [
    ({**MT_FASTCHAT, "turns": "What is 2 + 2?"}, "turns"),
    ({**MT_FASTCHAT, "reference": [3]}, "reference"),
    ({k: v for k, v in MT_FASTCHAT.items() if k != "category"}, "category"),
])
def test_mt_bench_bad_row_names_file_line_field(tmp_path: Path, row: dict, field: str) -> None:
    with pytest.raises(DataFormatError, match=f"q.jsonl:2: field '{field}'"):
        load(write_jsonl(tmp_path / "q.jsonl", [MT_FASTCHAT, row]), "mt_bench")


# ---------------------------------------------------------------- P3, MixInstruct, Alpaca

def test_p3_strips_endoftext_local_and_reads_hub_schema(tmp_path: Path) -> None:
    rows = [{"prompt": "Topic?\n\nGoal scored.\n", "completion": " Sports\n<|endoftext|>", "template": "ag_news_x"},
            {"inputs_pretokenized": "Is it good?", "targets_pretokenized": "yes", "hub_config": "imdb_y"}]
    examples = load(write_jsonl(tmp_path / "p.jsonl", rows), "p3")
    assert [fields(ex) for ex in examples] == [
        ("p3-0", "Topic?\n\nGoal scored.", "", "Sports", "p3", {"template": "ag_news_x"}),
        ("p3-1", "Is it good?", "", "yes", "p3", {"template": "imdb_y"})]
    with pytest.raises(DataFormatError, match="p.jsonl:1: field 'completion': must not be empty"):
        load(write_jsonl(tmp_path / "p.jsonl", [{**rows[0], "completion": "<|endoftext|>"}]), "p3")


def test_row_filter_include_exclude_and_bad_rows_of_dropped_values(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "completion": f"a{i}<|endoftext|>", "template": t}
            for i, t in enumerate(["keep", "kilt_tasks_hotpotqa_formulate", "other", "keep"])]
    rows.append({"prompt": "q", "completion": "<|endoftext|>", "template": "other"})  # bad, but filtered out
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    cfg = {"name": "p3", "format": "p3", "local_path": str(path), "sizes": {"train": 2, "valid": 0, "test": 0},
           "row_filter": {"key": "template", "include": None, "exclude": list(P3_HOTPOTQA_TEMPLATES)}}
    with pytest.raises(DataFormatError, match="p.jsonl:5"):
        load_examples(cfg)  # the bad 'other' row is kept by this filter, so it is an error
    assert [ex.id for ex in load_examples({**cfg, "max_rows": 4})] == ["p3-0", "p3-2", "p3-3"]
    cfg["row_filter"] = {"key": "template", "include": ["keep"], "exclude": list(P3_HOTPOTQA_TEMPLATES)}
    splits = load_splits(cfg, seed=0)
    assert sorted(ex.id for ex in splits.train) == ["p3-0", "p3-3"]
    assert splits.source["filtered_out"] == 3 and splits.source["skipped_bad_rows"] == 0


def test_mixinstruct_candidate_must_be_an_object(tmp_path: Path) -> None:
    row = {"id": "m/1", "instruction": "Say hi.", "input": "", "output": "Hi.",
           "candidates": [{"decoding_method": "top_p_sampling", "model": "m", "scores": {}, "text": "Hello."}, "x"]}
    with pytest.raises(DataFormatError, match="m.jsonl:1: field 'candidates\\[1\\]': expected an object"):
        load(write_jsonl(tmp_path / "m.jsonl", [row]), "mixinstruct")


def test_alpaca_nooutput_placeholder_is_a_bad_row(tmp_path: Path) -> None:
    row = {"instruction": "Draw a cat.", "input": "", "output": "<nooutput>"}
    with pytest.raises(DataFormatError, match="a.jsonl:1: field 'output': placeholder"):
        load(write_jsonl(tmp_path / "a.jsonl", [row]), "alpaca")


# ---------------------------------------------------------------- decontamination

def test_decontaminate_exact_and_contained_questions() -> None:
    question = "Which river runs past the village where Ada Lane was born?"
    evaluation = [Example("e1", question, "", "Tamar", "hotpotqa"),
                  Example("e2", "Which of the following is true?", "", "x", "mmlu")]
    pool = [Example("p1", "which river  runs past the VILLAGE where ada lane was born", "", "a", "p3"),  # exact
            Example("p2", f"Answer this: {question} Think first.", "", "a", "p3"),  # contained
            Example("p3", "Summarise.", f"Q: {question}", "a", "alpaca"),  # in the input
            Example("p4", question.replace("born", "borne"), "", "a", "p3"),  # not whole words
            Example("p5", "Read the text. Which of the following is true? A or B.", "", "a", "p3"),  # short: exact only
            Example("p6", "which of the following is TRUE", "", "a", "p3")]
    kept, dropped = decontaminate(pool, evaluation)
    assert [ex.id for ex in kept] == ["p4", "p5"] and dropped == 4
    assert normalise("  Who's   there?!") == "who s there"
    kept, dropped = decontaminate(pool, evaluation, min_words=4)
    assert [ex.id for ex in kept] == ["p4"] and dropped == 5


def test_decontamination_compares_whole_prompts_not_shared_instructions() -> None:
    instruction = "Rewrite the following sentence so that it sounds more formal."  # 10 words, repeated
    evaluation = [Example("e1", instruction, "the cat sat on the mat", "x", "alpaca")]
    pool = [Example("p1", instruction, "the dog ran to the park", "y", "alpaca"),  # same task, other input
            Example("p2", instruction, "The cat sat on the mat!", "z", "alpaca"),  # the test prompt itself
            Example("p3", f"Context: {instruction} the cat sat on the mat. Answer:", "", "z", "p3")]  # contained
    kept, dropped = decontaminate(pool, evaluation)
    assert [ex.id for ex in kept] == ["p1"] and dropped == 2


# ---------------------------------------------------------------- sources, fixtures, configs

def conf(stem: str) -> Any:
    """conf/data/<stem>.yaml merged into its schema (the YAML sets only what differs from DataConfig's defaults)."""
    from delift.data.config import DataConfig

    return OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONF_DATA / f"{stem}.yaml"))


def test_resolution_order_local_then_offline_copy_then_hub(tmp_path: Path, monkeypatch) -> None:
    cfg = conf("mixinstruct")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    offline = resolve_source(cfg)
    assert offline.kind == "offline_copy" and offline.fixture and is_fixture(cfg)
    assert offline.sources == (FIXTURES_DIR / "mixinstruct_sample.jsonl",)
    typed = data_config(cfg)  # what the pipeline passes
    assert isinstance(typed, DataConfig) and resolve_source(typed) == offline and is_fixture(typed)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub = resolve_source(cfg)
    assert hub.kind == "hub" and not hub.fixture and hub.to_dict()["sources"] == ["llm-blender/mix-instruct[train]"]
    p3 = resolve_source(OmegaConf.merge(conf("p3"), {}))
    assert [s.config for s in p3.sources] == list(conf("p3").row_filter.include)
    local = write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "instruction": "x", "input": "", "output": "y"}])
    assert resolve_source(OmegaConf.merge(cfg, {"local_path": str(local)})).kind == "local_path"


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_local_path_is_an_error_naming_the_key(blank: str) -> None:
    with pytest.raises(ValueError, match=r"data 'alpaca': data\.local_path is empty"):
        resolve_source(OmegaConf.merge(conf("alpaca"), {"local_path": blank}))
    with pytest.raises(ValueError, match=r"data 'x': data\.local_path is empty"):
        load_examples(DataConfig(name="x", format="alpaca", local_path=blank))


def test_shared_offline_copy_needs_a_root_and_existing_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DELIFT_SHARED_DATASETS", raising=False)
    with pytest.raises(ValueError, match="pass shared_datasets=cfg.paths.shared_datasets"):
        resolve_source(conf("gsm8k"))
    with pytest.raises(FileNotFoundError, match="offline copy is missing.*gsm8k/train.jsonl"):
        resolve_source(conf("gsm8k"), shared_datasets=tmp_path)
    write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "1+1?", "answer": "2\n#### 2"}])
    monkeypatch.setenv("DELIFT_SHARED_DATASETS", str(tmp_path))
    cfg = OmegaConf.merge(conf("gsm8k"), {"offline_copy": {"files": ["gsm8k.jsonl"]}})
    assert [ex.output for ex in load_examples(cfg)] == ["2\n#### 2"]


def test_multi_file_sources_keep_fallback_ids_unique(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("a", "b"):
        write_jsonl(tmp_path / f"{name}.jsonl", [HOTPOT_SIMPLE, HOTPOT_SIMPLE])
    cfg = OmegaConf.merge(conf("hotpotqa"), {"offline_copy": {"files": ["a.jsonl", "b.jsonl"]}, "max_rows": 1})
    examples = load_examples(cfg, shared_datasets=tmp_path)
    assert [ex.id for ex in examples] == ["hotpotqa-0", "hotpotqa-1"]  # max_rows applies per file


def test_fixtures_load_through_the_loader(monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    mix = load_splits(conf("mixinstruct"), seed=0)
    rows = [json.loads(line) for line in (FIXTURES_DIR / "mixinstruct_sample.jsonl").read_text().splitlines()]
    assert mix.source["fixture"] is True and mix.source["loaded"] == len(rows) == 50
    assert mix.source["skipped_bad_rows"] == 0
    assert mix.sizes == dict(conf("mixinstruct").sizes)
    assert all(list(r) == ["id", "instruction", "input", "output", "candidates"] for r in rows)
    assert all(2 <= len(r["candidates"]) <= 3 and all(sorted(c) == ["decoding_method", "model", "scores", "text"]
                                                      for c in r["candidates"]) for r in rows)
    mt = load_splits(conf("mt_bench"), seed=0)
    questions = [json.loads(line) for line in (FIXTURES_DIR / "mt_bench_sample.jsonl").read_text().splitlines()]
    with_reference = sum("reference" in q for q in questions)  # questions without one are dropped
    assert mt.source["fixture"] is True and mt.source["loaded"] == with_reference >= 16
    assert mt.sizes == dict(conf("mt_bench").sizes)
    assert {q["category"] for q in questions} == {"writing", "roleplay", "reasoning", "math", "coding",
                                                  "extraction", "stem", "humanities"}
    assert all(len(q["turns"]) == 2 for q in questions)
    assert all("reference" in q for q in questions if q["category"] in ("math", "reasoning", "coding"))


# every data config that reads a dataset: the generated ones (quickstart, structured) have no copy to load
CONFIGS = sorted(p.stem for p in CONF_DATA.glob("*.yaml")
                 if OmegaConf.load(p).get("format") not in GENERATED_FORMATS)


def test_every_paper_dataset_has_a_config_with_an_offline_copy() -> None:
    assert set(CONFIGS) >= {"mixinstruct", "p3", "alpaca", "dolly", "mmlu", "gsm8k", "squad", "hotpotqa", "mt_bench"}
    for stem in CONFIGS:
        cfg = conf(stem)
        assert cfg.hub_id and cfg.offline_copy.files and cfg.offline_copy.root in ("shared", "fixtures"), stem
        assert "${" not in json.dumps(OmegaConf.to_container(cfg)).replace("${.", ""), stem  # self-contained


@pytest.mark.parametrize("stem", CONFIGS)
def test_every_config_loads_its_offline_copy_with_its_sizes(stem: str, monkeypatch) -> None:
    cfg = conf(stem)
    if cfg.offline_copy.root == "shared" and not SHARED.is_dir():
        pytest.skip(f"no shared datasets at {SHARED} (clean clone): offline copy of {stem} not available")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    splits = load_splits(cfg, seed=0, shared_datasets=SHARED)
    assert splits.sizes == dict(cfg.sizes) and splits.source["kind"] == "offline_copy"
    assert splits.source["fixture"] is (cfg.offline_copy.root == "fixtures")
    examples = splits.train + splits.valid + splits.test
    assert all(ex.source == cfg.format and ex.instruction.strip() and ex.output.strip() for ex in examples)
    if stem == "p3":
        templates = {ex.metadata["template"] for ex in examples}
        assert templates <= set(cfg.row_filter.include) and not templates & set(P3_HOTPOTQA_TEMPLATES)
        assert splits.source["skipped_bad_rows"] == 0 and splits.source["loaded"] == 200 * len(cfg.row_filter.include)
    if stem == "hotpotqa":
        assert splits.source["loaded"] == 153 and all(ex.input for ex in examples)


def test_nested_data_configs_compose_and_load(monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=mixinstruct", "+data@usecase.target=mt_bench",
                                                       "+data@usecase.existing=p3"])
    assert list(cfg.usecase.existing.hub_config) == list(cfg.usecase.existing.row_filter.include)
    target = load_splits(cfg.usecase.target, cfg.seed, shared_datasets=cfg.paths.shared_datasets)
    assert target.source["fixture"] and target.sizes == dict(cfg.usecase.target.sizes)


def test_hub_rows_carry_their_config_even_from_a_single_config(monkeypatch):
    """P3 hub rows have no template field: the config name stands in for it, one config or several."""
    from delift.data import loading
    from delift.data.readers import HubSource
    from delift.data.records import RowLocation
    from delift.data.sources import ResolvedSource

    def fake_rows(source, max_rows=None, split=None):
        yield RowLocation(source.describe(), 0), {"inputs_pretokenized": "q", "targets_pretokenized": "a"}

    monkeypatch.setattr(loading, "iter_rows", fake_rows)
    single = ResolvedSource("hub", (HubSource("bigscience/P3", config="adversarial_qa_dbert_answer_the_following_q"),))
    rows = [row for _, row in loading._rows(single, None, None)]
    assert rows == [{"inputs_pretokenized": "q", "targets_pretokenized": "a",
                     "hub_config": "adversarial_qa_dbert_answer_the_following_q"}]
    several = ResolvedSource("hub", (HubSource("bigscience/P3", config="a"), HubSource("bigscience/P3", config="b")))
    assert [row["hub_config"] for _, row in loading._rows(several, None, None)] == ["a", "b"]
    plain = ResolvedSource("hub", (HubSource("tatsu-lab/alpaca"),))
    assert [row for _, row in loading._rows(plain, None, None)] == [{"inputs_pretokenized": "q",
                                                                     "targets_pretokenized": "a"}]

"""Training data sources: field mapping of pairs files, glob paths, clear errors."""
from __future__ import annotations

import json

import pytest

from koforge._utils.errors import ConfigError, DataError, InputPathError
from koforge.embeddings.data import HARD_NEGATIVES, DataSource, build_examples, infonce_parts, objective_of


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")


def test_pairs_field_mapping_over_a_glob_reads_files_in_sorted_order(tmp_path):
    _write_jsonl(tmp_path / "pet_b.jsonl", [{"title": "제목 둘", "content": "본문 둘"}])
    _write_jsonl(tmp_path / "pet_a.jsonl", [{"title": "제목 하나", "content": "본문 하나"}, {"title": " ", "content": "x"}])
    src = DataSource(kind="pairs", path="pet_*.jsonl", anchor_field="title", positive_field="content")
    cols = build_examples([src], "infonce", data_root=tmp_path)
    assert cols == {"anchor": ["제목 하나", "제목 둘"], "positive": ["본문 하나", "본문 둘"]}
    texts = build_examples([src], "simcse", data_root=tmp_path)["anchor"]
    assert texts == ["제목 하나", "본문 하나", "제목 둘", "본문 둘"]


def test_pairs_missing_field_and_empty_glob_are_clear_errors(tmp_path):
    _write_jsonl(tmp_path / "p.jsonl", [{"title": "a", "body": "b"}])
    with pytest.raises(DataError, match="lacks 'title'/'content'.*positive_field"):
        build_examples([DataSource(kind="pairs", path="p.jsonl", anchor_field="title", positive_field="content")],
                       "infonce", data_root=tmp_path)
    with pytest.raises(DataError, match="matches no file"):
        build_examples([DataSource(kind="pairs", path="nothing_*.jsonl")], "infonce", data_root=tmp_path)


def test_sts_scores_are_scaled_per_source_not_per_row(tmp_path):
    """KorSTS scores are 0-5 and many are <= 1: a 0.8 must become 0.16, below a 3.5 (0.7), for CoSENT's ranking."""
    (tmp_path / "five.tsv").write_text("score\tsentence1\tsentence2\n0.8\t가나\t다라\n3.5\t마바\t사아\n5.0\t자차\t카타\n",
                                       encoding="utf-8")
    (tmp_path / "unit.tsv").write_text("score\tsentence1\tsentence2\n0.8\t가나\t다라\n0.2\t마바\t사아\n", encoding="utf-8")
    five = build_examples([DataSource(kind="sts", path="five.tsv")], "cosent", data_root=tmp_path)["score"]
    assert five == pytest.approx([0.16, 0.7, 1.0], abs=1e-12)
    sampled = build_examples([DataSource(kind="sts", path="five.tsv", samples=1)], "angle", data_root=tmp_path, seed=1)
    assert sampled == {"sentence1": ["가나"], "sentence2": ["다라"], "score": [pytest.approx(0.16, abs=1e-12)]}  # the file's scale
    both = build_examples([DataSource(kind="sts", path="unit.tsv"), DataSource(kind="sts", path="five.tsv")], "cosent",
                          data_root=tmp_path)["score"]
    assert both == pytest.approx([0.8, 0.2, 0.16, 0.7, 1.0], abs=1e-12)  # a 0-1 source is kept as it is


@pytest.mark.parametrize("kind,name", [("sts", "bad.tsv"), ("nli", "bad.tsv"), ("pairs", "bad.jsonl"),
                                       ("text", "bad.txt"), ("text", "bad.jsonl")])
def test_non_utf8_data_file_is_a_data_error_naming_it(tmp_path, kind, name):
    (tmp_path / name).write_bytes("sentence1\tsentence2\tscore\n한국어\t문장\t3\n".encode("cp949"))
    with pytest.raises(DataError, match=rf"'{tmp_path / name}' is not UTF-8 \(line 2: byte 0xc7\)"):
        build_examples([DataSource(kind=kind, path=name)], "simcse", data_root=tmp_path)


def test_byte_order_mark_before_the_header_is_ignored(tmp_path):
    (tmp_path / "bom.tsv").write_bytes("\ufeffsentence1\tsentence2\tscore\n가나\t다라\t4\n".encode("utf-8"))
    assert build_examples([DataSource(kind="sts", path="bom.tsv")], "cosent", data_root=tmp_path) == {
        "sentence1": ["가나"], "sentence2": ["다라"], "score": [0.8]}


def test_korquad_texts_obey_min_and_max_chars(tmp_path):
    long = "긴 문단입니다. " * 30
    doc = {"data": [{"paragraphs": [{"context": long, "qas": [{"question": "무엇?"}]},
                                    {"context": " 짧은 문단 ", "qas": [{"question": " 어디에 있나요? "}]}]}]}
    (tmp_path / "kq.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    src = DataSource(kind="korquad", path="kq.json", min_chars=4, max_chars=100)
    assert build_examples([src], "simcse", data_root=tmp_path)["anchor"] == ["어디에 있나요?", "짧은 문단"]


def test_infonce_pairs_with_and_without_hard_negatives_train_as_two_parts(tmp_path, caplog):
    """One dataset has one set of columns: a mix splits in two, unless a part could not fill a batch."""
    import logging

    _write_jsonl(tmp_path / "with.jsonl", [{"anchor": "질문 하나", "positive": "답 하나", "negative": "오답 하나"},
                                           {"anchor": "질문 둘", "positive": "답 둘", "negative": "오답 둘"}])
    _write_jsonl(tmp_path / "without.jsonl", [{"anchor": "제목", "positive": "본문"}])
    with_negatives = DataSource(kind="pairs", path="with.jsonl")
    cols = build_examples([with_negatives], "infonce", data_root=tmp_path)
    assert infonce_parts(cols, min_rows=2) == {"infonce": cols} and cols["negative"] == ["오답 하나", "오답 둘"]
    cols = build_examples([with_negatives, DataSource(kind="pairs", path="without.jsonl")], "infonce", data_root=tmp_path)
    assert cols["negative"] == ["오답 하나", "오답 둘", None]
    assert infonce_parts(cols, min_rows=1) == {
        "infonce": {"anchor": ["제목"], "positive": ["본문"]},
        HARD_NEGATIVES: {"anchor": ["질문 하나", "질문 둘"], "positive": ["답 하나", "답 둘"], "negative": ["오답 하나", "오답 둘"]}}
    assert objective_of(HARD_NEGATIVES) == "infonce" and objective_of("cosent") == "cosent"
    with caplog.at_level(logging.WARNING, logger="koforge"):
        pooled = infonce_parts(cols, min_rows=2)  # the part without negatives (1 pair) fills no batch of 2
    assert pooled == {"infonce": {"anchor": ["질문 하나", "질문 둘", "제목"], "positive": ["답 하나", "답 둘", "본문"]}}
    assert "1 of 3 examples have no hard negative, and one of the two parts is smaller than one batch (2)" in caplog.text
    assert infonce_parts({"anchor": ["a"], "positive": ["b"], "negative": [None]}, 1) == {"infonce": {"anchor": ["a"], "positive": ["b"]}}


def test_parallel_source_pairs_each_line_with_its_translation_for_distill(tmp_path):
    from koforge.embeddings.data import check_layout

    (tmp_path / "p.ko").write_text("고양이가 잔다\n\n개가 뛴다\n고양이가 잔다\n", encoding="utf-8")
    (tmp_path / "p.en").write_text("The cat sleeps\nan empty Korean side\nA dog runs\nThe cat sleeps\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("혼자 있는 문장\n", encoding="utf-8")
    par = DataSource(kind="parallel", path="p.ko", teacher_path="p.en")
    cols = build_examples([DataSource(kind="text", path="t.txt"), par], "distill", data_root=tmp_path)
    # a pair with an empty side is dropped, a repeated pair kept once; a text source's teacher reads the text itself
    assert cols == {"text": ["혼자 있는 문장", "고양이가 잔다", "개가 뛴다"], "teacher_text": [None, "The cat sleeps", "A dog runs"]}
    assert build_examples([DataSource(kind="text", path="t.txt")], "distill", data_root=tmp_path) == {"text": ["혼자 있는 문장"]}
    assert build_examples([par], "simcse", data_root=tmp_path)["anchor"] == ["고양이가 잔다", "개가 뛴다"]
    with pytest.raises(ConfigError, match="objective 'infonce' needs pairs"):
        build_examples([par], "infonce", data_root=tmp_path)
    # records end at "\n" only: a U+2028 or form feed inside a line must not shift later lines onto other translations
    (tmp_path / "u.ko").write_text("고양이가\x0c 잔다\r\n개가 뛴다\r\n", encoding="utf-8", newline="")
    (tmp_path / "u.en").write_text("The cat\u2028 sleeps\nThe dog runs\n", encoding="utf-8")
    cols = build_examples([DataSource(kind="parallel", path="u.ko", teacher_path="u.en")], "distill", data_root=tmp_path)
    assert cols["teacher_text"] == ["The cat\u2028 sleeps", "The dog runs"] and cols["text"][1] == "개가 뛴다"
    (tmp_path / "short.en").write_text("The cat sleeps\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'.*p.ko' \(4 lines\) and '.*short.en' \(1 lines\) do not pair up"):
        build_examples([DataSource(kind="parallel", path="p.ko", teacher_path="short.en")], "distill", data_root=tmp_path)
    with pytest.raises(InputPathError, match="missing.en"):  # the recipe's up-front check reads both sides
        check_layout(DataSource(kind="parallel", path="p.ko", teacher_path="missing.en"), tmp_path)


def test_parallel_source_settings_are_checked_when_the_recipe_loads():
    with pytest.raises(ConfigError, match="a parallel source needs teacher_path"):
        DataSource(kind="parallel", path="p.ko")
    with pytest.raises(ConfigError, match="teacher_path is for parallel sources only"):
        DataSource(kind="text", path="p.ko", teacher_path="p.en")
    with pytest.raises(ConfigError, match="one file per side, not a pattern"):
        DataSource(kind="parallel", path="*.ko", teacher_path="p.en")


def test_nli_entailment_is_the_positive_and_contradiction_the_hard_negative(assets):
    cols = build_examples([DataSource(kind="nli", path="embed_nli.tsv")], "infonce", data_root=assets)
    premise = '그리고 그가 말했다, "엄마, 저 왔어요."'
    i = cols["anchor"].index(premise)
    assert (cols["positive"][i], cols["negative"][i]) == ("그는 엄마에게 집에 갔다고 말했다.", "그는 한마디도 하지 않았다.")
    # neutral hypotheses are never a positive or a negative
    assert "그는 학교 버스가 그를 내려주자마자 엄마에게 전화를 걸었다." not in cols["positive"] + cols["negative"]

"""Training data sources: field mapping of pairs files, glob paths, clear errors."""
from __future__ import annotations

import json

import pytest

from koforge._utils.errors import DataError
from koforge.embeddings.data import DataSource, build_examples


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

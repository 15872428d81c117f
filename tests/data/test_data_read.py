"""Streaming readers: every format, gzip, folders, non-UTF-8 lines, bad inputs."""
from __future__ import annotations

import gzip
import json
import logging

import pytest

from koforge._utils.errors import DataError, InputPathError
from koforge.data.read import ReadStats, parse_hf_source, read_texts


def test_formats_and_gzip(tmp_path):
    (tmp_path / "a.txt").write_text("첫째 문서\n\n둘째 문서\r\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "셋째\n줄바꿈"}, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text('id\ttext\n1\t"따옴표" 넷째\n', encoding="utf-8")
    (tmp_path / "d.csv").write_text('id,text\n1,"다섯째, 쉼표"\n', encoding="utf-8")
    with gzip.open(tmp_path / "e.txt.gz", "wt", encoding="utf-8") as f:
        f.write("여섯째\n")
    (tmp_path / ".ipynb_checkpoints").mkdir()  # Jupyter's copies would count every document twice
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("첫째 문서\n", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("숨김\n", encoding="utf-8")
    got = list(read_texts([tmp_path]))  # a folder: files in sorted order
    assert got == ["첫째 문서", "둘째 문서", "셋째\n줄바꿈", '"따옴표" 넷째', "다섯째, 쉼표", "여섯째"]


def test_a_byte_order_mark_neither_drops_nor_sticks_to_the_first_document(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.jsonl").write_bytes(bom + '{"text": "첫 문서"}\n{"text": "둘째"}\n'.encode())
    (tmp_path / "b.txt").write_bytes(bom + "셋째\n넷째\n".encode())
    (tmp_path / "c.csv").write_bytes(bom + "text,id\n다섯째,1\n".encode())
    with gzip.open(tmp_path / "d.tsv.gz", "wb") as f:
        f.write(bom + "text\tid\n여섯째\t1\n".encode())
    stats = ReadStats()
    assert list(read_texts([tmp_path], stats=stats)) == ["첫 문서", "둘째", "셋째", "넷째", "다섯째", "여섯째"]
    assert stats.skipped_lines == 0


def test_named_field_and_column(assets, tmp_path):
    docs = list(read_texts([assets / "data_petitions_12.jsonl"], field="content"))
    assert len(docs) == 12 and all(len(d) > 100 for d in docs)
    with pytest.raises(DataError, match="no field 'text'.*content"):
        list(read_texts([assets / "data_petitions_12.jsonl"]))
    (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'text'"):
        list(read_texts([tmp_path / "x.tsv"]))


def test_non_utf8_lines_skipped_with_warning_or_strict(tmp_path, caplog):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("좋은 줄\n".encode() + b"\xff\xfe broken\n" + "마지막\n".encode())
    stats = ReadStats()
    with caplog.at_level(logging.WARNING):
        assert list(read_texts([bad], stats=stats)) == ["좋은 줄", "마지막"]
    assert stats.skipped_lines == 1 and stats.skipped_where == [f"{bad}:2"]
    assert f"{bad}:2" in caplog.text
    with pytest.raises(DataError, match=f"{bad}:2.*not valid UTF-8"):
        list(read_texts([bad], strict=True))


def test_a_record_without_the_field_after_the_first_is_skipped_not_fatal(tmp_path, caplog):
    rows = [{"content": "첫째"}, {"title": "제목만"}, {"content": None}, {"content": 7}, [1], {"content": "마지막"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    stats = ReadStats()
    with caplog.at_level(logging.WARNING):
        assert list(read_texts([path], field="content", stats=stats)) == ["첫째", "마지막"]
    assert stats.skipped_where == [f"{path}:2", f"{path}:4", f"{path}:5"]  # a null value is no text, like ""
    assert f"{path}:2: no field 'content' (found: title)" in caplog.text and "holds a int, not text" in caplog.text
    with pytest.raises(DataError, match=f"{path}:2: no field 'content'.*without --strict"):
        list(read_texts([path], field="content", strict=True))
    with pytest.raises(DataError, match=f"{path}:1: no field 'title' .*--field"):  # the first record decides: wrong field
        list(read_texts([path], field="title"))


def test_bad_inputs(tmp_path):
    with pytest.raises(InputPathError, match="not found"):
        read_texts([tmp_path / "missing.txt"])  # fails at once, before iteration
    (tmp_path / "x.parquet").write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported format"):
        read_texts([tmp_path / "x.parquet"])
    (tmp_path / "broken.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupted"):
        list(read_texts([tmp_path / "broken.txt.gz"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no readable text files"):
        read_texts([tmp_path / "empty"])
    with pytest.raises(DataError, match="no input"):
        read_texts([])


def test_hf_source_syntax():
    assert parse_hf_source("hf:e9t/nsmc") == ("e9t/nsmc", None, "train")
    assert parse_hf_source("hf:wikimedia/wikipedia:20231101.ko@train[:100]") == ("wikimedia/wikipedia", "20231101.ko", "train[:100]")
    with pytest.raises(DataError, match="names no dataset"):
        read_texts(["hf:"])


def test_hf_dataset_names_are_looked_up_once_no_retries(hub_online):
    """A missing dataset or an unreachable hub: one clear DataError at once (datasets retried ~25 s)."""
    import time

    hub_online("missing")
    start = time.perf_counter()
    with pytest.raises(DataError, match="hub dataset 'org/nothing' not found"):
        list(read_texts(["hf:org/nothing"]))
    hub_online("unreachable")
    with pytest.raises(DataError, match="hub dataset 'e9t/nsmc': the Hugging Face hub could not be reached"):
        list(read_texts(["hf:e9t/nsmc"]))
    assert time.perf_counter() - start < 5


def test_a_jsonl_line_that_is_not_an_object_is_skipped_even_first(tmp_path):
    """A stray array or string says nothing about --field: it was fatal ("no field 'text' (found: list)") when first."""
    path = tmp_path / "p.jsonl"
    path.write_text('\n[1, 2]\n"머리말"\n{"text": "첫째"}\n7\n{"text": "둘째"}\n', encoding="utf-8")
    stats = ReadStats()
    assert list(read_texts([path], stats=stats)) == ["첫째", "둘째"]
    assert stats.skipped_where == [f"{path}:2", f"{path}:3", f"{path}:5"]
    with pytest.raises(DataError, match=f"{path}:2: not a JSON object"):
        list(read_texts([path], strict=True))


def test_a_csv_quote_never_closed_is_named_not_read_as_one_document(tmp_path):
    """Was: the rest of the file became one silent document. Short rows were dropped without a count."""
    path = tmp_path / "p.csv"
    path.write_text('id,text\n1,"여러\n줄 문서"\n2\n3,"따옴표"뒤\n4,넷째\n5,"닫히지 않은\n6,여섯째\n', encoding="utf-8")
    stats = ReadStats()
    assert list(read_texts([path], stats=stats)) == ["여러\n줄 문서", "넷째"]
    assert stats.skipped_where == [f"{path}:4", f"{path}:5", f"{path}:7"]  # the line each bad row starts on
    with pytest.raises(DataError, match=f"{path}:4: 1 column"):
        list(read_texts([path], strict=True))
    path.write_text('id,text\n1,"닫히지 않은\n2,둘째\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:2: a quote opened here is never closed"):
        list(read_texts([path], strict=True))

"""Packed token shards decode back to the cleaned text; corpus jobs refuse bad input."""
from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest

from koforge._utils.errors import ConfigError, DataError, OutputExistsError, TokenizerError
from koforge.data.clean import CleanConfig
from koforge.data.corpus import clean_corpus, corpus_stats
from koforge.data.pack import PackConfig, pack_corpus
from koforge.data.shards import ShardManifest, iter_documents, open_split, token_dtype, write_split
from koforge.tokenizers.io import load_tokenizer, tokenizer_fingerprint
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer


@pytest.fixture(scope="module")
def tok_dir(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "bpe"
    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()
    train_tokenizer(texts, TokenizerTrainConfig(vocab_size=600), out)
    return out


def test_clean_then_pack_decodes_to_the_cleaned_text(assets, tok_dir, tmp_path):
    raw = tmp_path / "raw.jsonl"
    docs = [unicodedata.normalize("NFD", "<b>첫 문서</b>  입니다"), "둘째 문서 &lt;/s&gt; 가짜 경계", "둘째 문서 &lt;/s&gt; 가짜 경계",
            "셋째\x00 문서\n\n\n줄"]
    raw.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    report = clean_corpus([raw], tmp_path / "clean.jsonl", config=CleanConfig())
    assert (report.read, report.kept, report.duplicates) == (4, 3, 1)
    cleaned = [json.loads(line)["text"] for line in (tmp_path / "clean.jsonl").open(encoding="utf-8")]
    assert cleaned == ["첫 문서 입니다", "둘째 문서 </s> 가짜 경계", "셋째 문서\n\n줄"]

    result = pack_corpus({"train": [tmp_path / "clean.jsonl"], "validation": [assets / "tok_nsmc_400.txt"]}, tok_dir,
                         tmp_path / "shards", config=PackConfig(batch_size=2, shard_tokens=25))
    manifest = ShardManifest.read(tmp_path / "shards")
    tok = load_tokenizer(tok_dir)
    assert manifest.dtype == "uint16" and manifest.eos_id == tok.eos_token_id
    assert manifest.tokenizer_fingerprint == tokenizer_fingerprint(tok_dir)
    assert len(manifest.splits["train"].files) >= 2  # several shards: documents never straddle one
    decoded = [tok.decode(ids.tolist()) for ids in iter_documents(tmp_path / "shards", "train")]
    assert decoded == cleaned  # "</s>" inside a text is text, not a document boundary
    _, maps = open_split(tmp_path / "shards", "train")
    assert int(sum((m == manifest.eos_id).sum() for m in maps)) == 3
    assert manifest.splits["train"].bytes == sum(len(d.encode()) for d in cleaned)
    assert manifest.splits["validation"].documents == 400 and result.tokens_per_second > 0


def test_pack_with_a_process_pool_is_identical(assets, tok_dir, tmp_path):
    src = {"train": [assets / "tok_nsmc_400.txt"]}
    one = pack_corpus(src, tok_dir, tmp_path / "one", config=PackConfig(batch_size=64))
    two = pack_corpus(src, tok_dir, tmp_path / "two", config=PackConfig(batch_size=64, workers=2))
    for r in (one, two):  # throughput is encoding time only; loading the tokenizer and spawning workers is setup
        assert 0 < r.encode_seconds and r.encode_seconds + r.setup_seconds <= r.seconds
        assert r.tokens_per_second == pytest.approx(r.tokens / r.encode_seconds)
    assert two.setup_seconds > one.setup_seconds  # two spawned processes each loaded the tokenizer before timing began
    a = np.fromfile(tmp_path / "one" / "train_00000.bin", dtype=np.uint16)
    b = np.fromfile(tmp_path / "two" / "train_00000.bin", dtype=np.uint16)
    assert np.array_equal(a, b)


def test_pack_bad_inputs_leave_nothing_behind(assets, tok_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        pack_corpus({"train": [empty]}, tok_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
    with pytest.raises(TokenizerError, match="not found"):
        pack_corpus({"train": [assets / "tok_nsmc_400.txt"]}, tmp_path / "no_tokenizer", tmp_path / "out")
    with pytest.raises(ConfigError, match=r"^workers=0 must be >= 1 \(--workers/-w\)\.$"):
        PackConfig(workers=0)
    for name in ("../escaped", "a/b", ""):  # a split name is a file name inside the output folder, never a path
        with pytest.raises(ConfigError, match="split name"):
            pack_corpus({name: [assets / "tok_nsmc_400.txt"]}, tok_dir, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError):
        pack_corpus({"train": [assets / "tok_nsmc_400.txt"]}, tok_dir, tmp_path / "out")


@pytest.mark.parametrize("damage,message", [
    ("cut_tokens", "holds 26 tokens.*records 28"), ("odd_bytes", "is 15 bytes, not a positive multiple of 2"),
    ("empty", "is 0 bytes"), ("missing", "is missing")])
def test_shards_that_disagree_with_the_manifest_are_refused(tmp_path, damage, message):
    folder = tmp_path / "shards"
    folder.mkdir()
    dtype = token_dtype(100)
    docs = [([5, 6, 7], 9)] * 7  # 4 tokens each with EOS, 28 in all: shards of 16 and 12 tokens
    info = write_split(folder, "train", docs, eos_id=0, dtype=dtype, shard_tokens=16)
    ShardManifest(dtype=dtype.name, eos_id=0, vocab_size=100, tokenizer_fingerprint="t", splits={"train": info}).write(folder)
    assert [len(m) for m in open_split(folder, "train")[1]] == [16, 12]
    shard = folder / info.files[1]
    data = shard.read_bytes()
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes({"cut_tokens": data[:-4], "odd_bytes": data[:-9], "empty": b""}[damage])
    with pytest.raises(DataError, match=message) as e:
        open_split(folder, "train")
    assert str(shard) in str(e.value) and "koforge data pack" in str(e.value)


@pytest.mark.parametrize("edit,message", [
    (lambda m: {**m, "extra": 1}, "unexpected keyword argument 'extra'"), (lambda m: {**m, "dtype": "int7"}, "dtype 'int7'"),
    (lambda m: {k: v for k, v in m.items() if k != "splits"}, "no key 'splits'"), (lambda m: [m], "format 'list'"),
    (lambda m: {**m, "splits": {"train": {"files": []}}}, "missing 3 required")])
def test_a_malformed_manifest_is_one_clear_error(tmp_path, edit, message):
    info = write_split(tmp_path, "train", [([5, 6], 6)], eos_id=0, dtype=token_dtype(10))
    manifest = ShardManifest(dtype="uint16", eos_id=0, vocab_size=10, tokenizer_fingerprint="t", splits={"train": info})
    raw = json.loads(manifest.write(tmp_path).read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(edit(raw)))
    with pytest.raises(DataError, match=message) as e:
        ShardManifest.read(tmp_path)
    assert "Re-pack with `koforge data pack`" in str(e.value)


def test_clean_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="empty corpus"):
        (tmp_path / "e.txt").write_text("", encoding="utf-8")
        clean_corpus([tmp_path / "e.txt"], tmp_path / "o.jsonl")
    (tmp_path / "x.txt").write_text("english only\n", encoding="utf-8")
    with pytest.raises(DataError, match="nothing left"):
        clean_corpus([tmp_path / "x.txt"], tmp_path / "o.jsonl", config=CleanConfig(min_hangul_ratio=0.5))
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(DataError, match=".jsonl or .txt"):
        clean_corpus([tmp_path / "x.txt"], tmp_path / "o.parquet")


def test_stats_counts_and_plot(tmp_path):
    (tmp_path / "s.txt").write_text("가나다 ab\n한국어\n", encoding="utf-8")
    s = corpus_stats([tmp_path / "s.txt"])
    assert (s.documents, s.characters, s.hangul_characters) == (2, 9, 6)
    assert s.hangul_share == pytest.approx(6 / 8)
    assert s.plot(tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def _word_level(folder, vocab: dict[str, int]):
    """A bare whitespace tokenizer.json with exactly these ids (holes allowed)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


@pytest.mark.parametrize("ids,dtype", [(65535, "uint16"), (65536, "uint16"), (65537, "uint32")])
def test_dtype_at_the_uint16_boundary_holds_the_largest_id(tmp_path, ids, dtype):
    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, ids)}}
    tok = _word_level(tmp_path / "tok", vocab)
    (tmp_path / "t.txt").write_text(f"w1 w{ids - 2}\nw2\n", encoding="utf-8")
    pack_corpus({"train": [tmp_path / "t.txt"]}, tok, tmp_path / "sh", config=PackConfig(eos_token=f"w{ids - 1}"))
    manifest = ShardManifest.read(tmp_path / "sh")
    assert (manifest.dtype, manifest.vocab_size, manifest.eos_id) == (dtype, ids, ids - 1)
    assert np.fromfile(tmp_path / "sh" / "train_00000.bin", dtype=dtype).tolist() == [1, ids - 2, ids - 1, 2, ids - 1]


def test_a_vocabulary_with_id_holes_is_sized_by_its_largest_id(tmp_path):
    """GPT-4o holds 200,000 tokens with ids up to 200,018: counting tokens would overflow uint16 or undersize the LM."""
    tok = _word_level(tmp_path / "tok", {"[UNK]": 0, "가": 1, "나": 2, "</s>": 70000})
    (tmp_path / "t.txt").write_text("가 나\n나\n", encoding="utf-8")
    pack_corpus({"train": [tmp_path / "t.txt"]}, tok, tmp_path / "sh", config=PackConfig(eos_token="</s>"))
    manifest = ShardManifest.read(tmp_path / "sh")
    assert (manifest.dtype, manifest.vocab_size, manifest.eos_id) == ("uint32", 70001, 70000)
    assert np.fromfile(tmp_path / "sh" / "train_00000.bin", dtype=np.uint32).tolist() == [1, 2, 70000, 2, 70000]

"""expand_vocabulary guarantees: old rows bit-identical, outputs unchanged without new tokens, save/reload,
a tokenizer folder transformers 4.x and 5.x both load."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from koforge.vocab.build import build_expanded_tokenizer
from koforge.vocab.config import ExpansionConfig
from koforge.vocab.diff import diff_tokenizers
from koforge.vocab.expand import expand_vocabulary
from tokenizer_folders import TEXTS, assert_portable, assert_same_tokenizer

CAUSAL = {"qwen3", "llama", "exaone4"}


def _load(arch, path):
    cls = AutoModelForCausalLM if arch in CAUSAL else AutoModel
    return cls.from_pretrained(path).eval()


def _first_mismatch(a: torch.Tensor, b: torch.Tensor) -> str:
    diff = (a.float() - b.float()).abs()
    return f"max diff {diff.max().item():.3g}, mean {diff.mean().item():.3g}"


@pytest.fixture(scope="module")
def expanded(model_dirs, tok_dirs, assets, tmp_path_factory):
    """Every (arch, mode) expansion the module checks, done once."""
    root = tmp_path_factory.mktemp("expanded")
    out = {}
    cases = [("qwen3", "merge"), ("llama", "merge"), ("exaone4", "added-tokens"), ("bert", "added-tokens")]
    for arch, mode in cases:
        cfg = ExpansionConfig(mode=mode, english_eval=str(assets / "vocab_en.txt"), korean_eval=str(assets / "vocab_ko.txt"))
        out[arch, mode] = expand_vocabulary(model_dirs[arch], tok_dirs["donor"], cfg, root / f"{arch}-{mode}")
    return out


@pytest.mark.parametrize("arch,mode", [("qwen3", "merge"), ("llama", "merge"), ("exaone4", "added-tokens"), ("bert", "added-tokens")])
def test_old_rows_bit_identical_and_report_ids(expanded, model_dirs, arch, mode):
    result = expanded[arch, mode]
    base, new = _load(arch, model_dirs[arch]), _load(arch, result.path)
    n = base.get_input_embeddings().weight.shape[0]
    report = json.loads((result.path / "expansion_report.json").read_text())
    assert report["base_vocab_size"] == n
    assert report["added_token_ids"] == result.added_token_ids == list(range(n, report["expanded_vocab_size"]))
    assert new.get_input_embeddings().weight.shape[0] == report["expanded_vocab_size"] > n
    assert torch.equal(new.get_input_embeddings().weight[:n], base.get_input_embeddings().weight), "input rows changed"
    if arch in CAUSAL:
        bo, no = base.get_output_embeddings().weight, new.get_output_embeddings().weight
        assert torch.equal(no[:n], bo), "output rows changed"
        tied = no.data_ptr() == new.get_input_embeddings().weight.data_ptr()
        assert tied == (arch == "llama")
    new_rows = new.get_input_embeddings().weight[n:]
    assert torch.isfinite(new_rows).all() and new_rows.abs().sum() > 0
    assert (result.path / "expansion_report.md").exists()


@pytest.mark.parametrize("arch,mode", [("qwen3", "merge"), ("llama", "merge"), ("exaone4", "added-tokens"), ("bert", "added-tokens")])
def test_outputs_identical_on_text_without_new_tokens(expanded, model_dirs, en_texts, arch, mode):
    path = expanded[arch, mode].path
    base_tok, new_tok = AutoTokenizer.from_pretrained(model_dirs[arch]), AutoTokenizer.from_pretrained(path)
    batch_base = base_tok(en_texts[:4], return_tensors="pt", padding=True)
    batch_new = new_tok(en_texts[:4], return_tensors="pt", padding=True)
    assert torch.equal(batch_base["input_ids"], batch_new["input_ids"]), "English token ids changed"
    base, new = _load(arch, model_dirs[arch]), _load(arch, path)
    with torch.no_grad():
        a, b = base(**batch_base), new(**batch_new)
    if arch in CAUSAL:
        n = a.logits.shape[-1]
        assert torch.equal(a.logits, b.logits[..., :n]), _first_mismatch(a.logits, b.logits[..., :n])
    else:
        assert torch.equal(a.last_hidden_state, b.last_hidden_state), _first_mismatch(a.last_hidden_state, b.last_hidden_state)


@pytest.mark.parametrize("arch,mode", [("qwen3", "merge"), ("exaone4", "added-tokens"), ("bert", "added-tokens")])
def test_save_reload_gives_same_tokens_and_outputs(expanded, model_dirs, tok_dirs, ko_texts, arch, mode):
    path = expanded[arch, mode].path
    base_tok = AutoTokenizer.from_pretrained(model_dirs[arch])
    donor_tok = AutoTokenizer.from_pretrained(tok_dirs["donor"])
    in_memory = build_expanded_tokenizer(base_tok, diff_tokenizers(base_tok, donor_tok, ExpansionConfig(mode=mode)).tokens,
                                         mode, donor_tok).tokenizer
    reloaded = AutoTokenizer.from_pretrained(path)
    ids_mem = in_memory(ko_texts[:20])["input_ids"]
    assert ids_mem == reloaded(ko_texts[:20])["input_ids"]
    new_ids = set(expanded[arch, mode].added_token_ids)
    assert any(i in new_ids for seq in ids_mem for i in seq), "Korean text uses no new token"
    assert sum(map(len, ids_mem)) < sum(map(len, base_tok(ko_texts[:20])["input_ids"]))
    batch = reloaded(ko_texts[:3], return_tensors="pt", padding=True)
    first, second = _load(arch, path), _load(arch, path)
    with torch.no_grad():
        a, b = first(**batch), second(**batch)
    key = "logits" if arch in CAUSAL else "last_hidden_state"
    assert torch.equal(a[key], b[key])


@pytest.mark.parametrize("arch,mode", [("qwen3", "merge"), ("exaone4", "added-tokens"), ("bert", "added-tokens")])
def test_expanded_tokenizer_folder_is_portable_and_unchanged(expanded, model_dirs, tok_dirs, ko_texts, arch, mode):
    """transformers 5 alone would save class TokenizersBackend, which 4.x cannot load."""
    base_tok = AutoTokenizer.from_pretrained(model_dirs[arch])
    donor_tok = AutoTokenizer.from_pretrained(tok_dirs["donor"])
    in_memory = build_expanded_tokenizer(base_tok, diff_tokenizers(base_tok, donor_tok, ExpansionConfig(mode=mode)).tokens,
                                         mode, donor_tok).tokenizer
    assert_portable(expanded[arch, mode].path)
    assert_same_tokenizer(in_memory, expanded[arch, mode].path, ko_texts[:20] + TEXTS)


def test_korean_round_trips_through_expanded_tokenizers(expanded, ko_texts):
    for (arch, mode), result in expanded.items():
        if arch == "bert":
            continue  # WordPiece lowercases and drops spaces: no exact round trip by design
        tok = AutoTokenizer.from_pretrained(result.path)
        for text in ko_texts[:30]:
            assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text, (arch, mode, text)


def test_merge_mode_keeps_special_token_ids(expanded, model_dirs):
    base = AutoTokenizer.from_pretrained(model_dirs["qwen3"])
    new = AutoTokenizer.from_pretrained(expanded["qwen3", "merge"].path)
    for special in ("<|endoftext|>", "<|im_start|>"):
        assert new.convert_tokens_to_ids(special) == base.convert_tokens_to_ids(special)
        assert new(special, add_special_tokens=False)["input_ids"] == base(special, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("byte_fallback,missing", [(False, " 가나"), (True, "é")])
def test_merge_mode_leaves_out_tokens_with_characters_the_base_lacks(byte_fallback, missing):
    """A SentencePiece-style BPE splits a character it lacks into <unk> (or <0xNN> byte pieces): a token that then
    split into two pieces got the merge ("▁가", "<unk>"), which builds "▁가<unk>", not the token, and the Rust
    tokenizer refused the whole tokenizer.json ("Token `▁<unk>` out of vocabulary")."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    from koforge.vocab.diff import NewToken

    vocab = {"<unk>": 0, "▁": 1, "가": 2, "다": 3, "▁가": 4, "<0xC3>": 5, "<0xA9>": 6}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("▁", "가")], unk_token="<unk>", byte_fallback=byte_fallback))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    base = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    tokens = [NewToken(text=" 가다", donor_token="", donor_id=1), NewToken(text=missing, donor_token="", donor_id=2)]
    result = build_expanded_tokenizer(base, tokens, "merge")
    assert result.added_texts == [" 가다"] and result.unreachable == [missing]
    assert result.piece_ids == [[4, 3]]  # ▁가 + 다: no <unk> or byte piece in the mean
    assert result.tokenizer.tokenize("가다 가다") == ["▁가다", "▁가다"]


def test_wordpiece_base_matches_hangul_tokens_without_accent_stripping(expanded, model_dirs, ko_texts):
    result = expanded["bert", "added-tokens"]
    base = AutoTokenizer.from_pretrained(model_dirs["bert"])
    new = AutoTokenizer.from_pretrained(result.path)
    assert base.tokenize("안녕")[0] != "안녕"  # the base sees jamo
    before, after = base(ko_texts[:40])["input_ids"], new(ko_texts[:40])["input_ids"]
    assert sum(map(len, after)) < 0.8 * sum(map(len, before))
    assert any("normalized=False" in n for n in result.report["notes"])
    hangul_words = {w for t in ko_texts for w in t.split() if all("가" <= ch <= "힣" for ch in w)}
    assert not [w for w in hangul_words if new.unk_token in new.tokenize(w)]  # jamo_fallback=complete: no [UNK]
    assert new.tokenize("Café AND Résumé") == base.tokenize("Café AND Résumé")  # accents still stripped elsewhere


def test_wordpiece_new_tokens_start_from_known_jamo_not_unk(model_dirs, tok_dirs):
    """A word the base saw as one [UNK] gets its pieces from the jamo-completed tokenizer (known jamo only)."""
    base, donor = AutoTokenizer.from_pretrained(model_dirs["bert"]), AutoTokenizer.from_pretrained(tok_dirs["donor"])
    tokens = diff_tokenizers(base, donor, ExpansionConfig()).tokens
    result = build_expanded_tokenizer(base, tokens, "added-tokens", donor)
    unk, n_base = base.unk_token_id, len(base)
    words = [(t, p) for t, p in zip(result.added_texts, result.piece_ids) if not t.startswith("##") and len(t) > 1]
    was_unk = [(t, p) for t, p in words if base(t, add_special_tokens=False)["input_ids"] == [unk]]
    assert was_unk and all(i < n_base for _, p in words for i in p)
    syllable_words = [(t, p) for t, p in was_unk if all("가" <= ch <= "힣" for ch in t)]
    assert syllable_words and all(p != [unk] for _, p in syllable_words)  # e.g. 느낌: its known jamo


def test_masked_lm_head_is_kept_and_resized(tok_dirs, en_texts, tmp_path):
    """A BertForMaskedLM expands as itself (head rows resized, old logits unchanged), with the default config."""
    from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(tok_dirs["wp"])
    torch.manual_seed(0)
    base = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64)).eval()
    base.save_pretrained(tmp_path / "mlm")
    tok.save_pretrained(tmp_path / "mlm")
    result = expand_vocabulary(tmp_path / "mlm", tok_dirs["donor"], None, tmp_path / "out")
    new, info = AutoModelForMaskedLM.from_pretrained(result.path, output_loading_info=True)
    assert type(new) is BertForMaskedLM and not info["missing_keys"] and not info["unexpected_keys"]
    n_new = result.report["expanded_vocab_size"]
    assert new.get_output_embeddings().weight.shape[0] == new.cls.predictions.bias.shape[0] == n_new
    ids = tok(en_texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        before, after = base(**ids).logits, new.eval()(**ids).logits
    assert torch.equal(after[..., : len(tok)], before)


def test_report_figures(expanded):
    report = expanded["qwen3", "merge"].report
    assert report["english_eval"]["unchanged_share"] == 1.0
    assert report["korean_eval"]["tokens_per_line_after"] < report["korean_eval"]["tokens_per_line_before"]
    stats = report["row_statistics"]
    assert set(stats) == {"input", "output"} and stats["input"]["new_norm_mean"] > 0
    assert len(report["added_tokens"]) == report["num_added"]


def test_padded_embedding_matrix_is_reused(tok_dirs, make_tiny_model, tmp_path):
    """A model with more rows than tokens (Qwen3 ships 151,936 rows for 151,669 tokens): no resize, only new ids written."""
    tok = AutoTokenizer.from_pretrained(tok_dirs["base"])
    model = make_tiny_model("qwen3", len(tok) + 1000)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    result = expand_vocabulary(tmp_path / "base", tok_dirs["donor"], ExpansionConfig(), tmp_path / "out")
    new = AutoModelForCausalLM.from_pretrained(result.path)
    rows_before, rows_after = model.get_input_embeddings().weight, new.get_input_embeddings().weight
    end = result.added_token_ids[-1] + 1
    assert rows_after.shape == rows_before.shape and result.report["embedding_rows"] == {"before": len(tok) + 1000, "after": len(tok) + 1000}
    assert torch.equal(rows_after[:len(tok)], rows_before[:len(tok)]) and torch.equal(rows_after[end:], rows_before[end:])
    assert not torch.equal(rows_after[len(tok):end], rows_before[len(tok):end])


def test_base_with_holes_in_its_ids(tok_dirs, make_tiny_model, ko_texts, tmp_path):
    """GPT-4o's o200k tokenizer.json has 200,000 tokens but ids up to 200,018. Merge mode gave new ids after the
    largest id but resized the matrix to len(tokenizer) rows (IndexError); added-tokens mode failed with a misleading
    "expanded again?" and cannot work: `tokenizers` renumbers such added tokens when the saved file is loaded."""
    from transformers import PreTrainedTokenizerFast

    from koforge._utils.errors import TokenizerError

    spec = json.loads(AutoTokenizer.from_pretrained(tok_dirs["base"]).backend_tokenizer.to_str())
    n = len(spec["model"]["vocab"])
    spec["model"]["vocab"]["<|endofprompt|>"] = n + 18  # ids n .. n+17 unused, as in o200k
    spec["added_tokens"].append({"id": n + 18, "content": "<|endofprompt|>", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": True})
    (tmp_path / "tok.json").write_text(json.dumps(spec), encoding="utf-8")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tok.json"), eos_token="<|endoftext|>")
    assert len(tok) == n + 1
    model = make_tiny_model("qwen3", n + 19)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    with pytest.raises(TokenizerError, match="ids have holes .*Use mode=merge"):
        expand_vocabulary(tmp_path / "base", tok_dirs["donor"], ExpansionConfig(max_new_tokens=40), tmp_path / "added")
    cfg = ExpansionConfig(mode="merge", max_new_tokens=40)
    result = expand_vocabulary(tmp_path / "base", tok_dirs["donor"], cfg, tmp_path / "out")
    ids = result.added_token_ids
    assert ids == list(range(n + 19, n + 19 + len(ids))) and result.report["base_vocab_size"] == n + 19
    new = AutoModelForCausalLM.from_pretrained(result.path)
    weight = new.get_input_embeddings().weight
    assert weight.shape[0] == result.report["expanded_vocab_size"] == ids[-1] + 1
    assert torch.equal(weight[: n + 19], model.get_input_embeddings().weight)
    assert torch.equal(new.get_output_embeddings().weight[: n + 19], model.get_output_embeddings().weight)
    new_tok = AutoTokenizer.from_pretrained(result.path)
    assert new_tok.convert_tokens_to_ids("<|endofprompt|>") == n + 18
    used = {i for seq in new_tok(ko_texts, add_special_tokens=False)["input_ids"] for i in seq}
    assert used & set(ids) and max(used) < weight.shape[0]


def test_prepending_normalizer_base_gets_only_reachable_word_start_tokens(tok_dirs, ko_texts):
    """A normaliser that prepends "▁" (Llama-2-style, koforge's SentencePiece presets) normalises an added " 있다" to
    "▁▁있다", which text never holds: every such row was dead, and mid-word tokens matched only at word starts."""
    base, donor = AutoTokenizer.from_pretrained(tok_dirs["sp"]), AutoTokenizer.from_pretrained(tok_dirs["donor"])
    tokens = diff_tokenizers(base, donor, ExpansionConfig()).tokens
    result = build_expanded_tokenizer(base, tokens, "added-tokens", donor)
    new = result.tokenizer
    assert result.added_texts and all(t.startswith(" ") for t in result.added_texts)
    assert len(result.added_texts) < len(tokens) and any("left out" in n for n in result.notes)
    unreachable = [t for t, i in zip(result.added_texts, result.added_ids)
                   if new("가" + t, add_special_tokens=False)["input_ids"][-1] != i]
    assert not unreachable, unreachable[:5]
    # rows start from the word start's pieces ("▁있다"), not those of "▁▁있다"
    assert result.piece_ids == [base(t[1:], add_special_tokens=False)["input_ids"] for t in result.added_texts]
    assert all(new.decode(new(t, add_special_tokens=False)["input_ids"]) == t for t in ko_texts)
    old = base.get_vocab()
    assert all(new.convert_tokens_to_ids(tok) == i for tok, i in old.items())
    # 6,634 -> 5,996 tokens (47 rows); before, 181 rows (most never produced) gave 6,409
    assert sum(map(len, new(ko_texts)["input_ids"])) < 0.93 * sum(map(len, base(ko_texts)["input_ids"]))


def test_apply_is_tracked_in_mlflow(model_dirs, tok_dirs, tmp_path, mlflow_store):
    import json

    import mlflow
    from typer.testing import CliRunner

    from koforge.cli.main import app

    r = CliRunner().invoke(app, ["expand", "apply", str(model_dirs["qwen3"]), str(tok_dirs["donor"]), str(tmp_path / "ko")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "ko" / "expansion_report.json").read_text(encoding="utf-8"))
    mlflow.set_tracking_uri(mlflow_store)
    [run] = mlflow.search_runs(experiment_names=["koforge-expand"], filter_string="attributes.run_name = 'apply:ko'",
                               output_format="list")
    assert run.info.status == "FINISHED" and run.data.params["mode"] == report["mode"]
    assert run.data.metrics["expanded_vocab_size"] == report["expanded_vocab_size"]
    assert run.data.metrics["korean/tokens_per_line_after"] == pytest.approx(report["korean_eval"]["tokens_per_line_after"])
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)] == ["expansion_report.json"]


"""SuperBPE stage 2: superwords stay inside sentences, span at most N words, and training is deterministic."""
from __future__ import annotations

import json
import re

import pytest

from koforge._utils.errors import ConfigError, DataError
from koforge.tokenizers.bpe import is_superword, superword_words, token_text
from koforge.tokenizers.io import load_tokenizer
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

# Sentences whose ends are followed by frequent openings ("다. 그리고"), so an unchecked
# stage 2 would happily merge across the sentence end; long repeated phrases tempt long superwords.
SENTENCES = ["국민 여러분 안녕하십니까 저는 오늘 청원을 올립니다.", "그리고 정부는 이 문제를 해결해 주시기 바랍니다!",
             "정말 억울한 일이 아닐 수 없습니다?", "많은 분들의 관심과 동의를 부탁드립니다.", "감사합니다"]


@pytest.fixture(scope="module")
def corpus(assets):
    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()
    texts += [json.loads(line)["content"] for line in (assets / "data_petitions_12.jsonl").open(encoding="utf-8")]
    for i in range(120):
        a, b, c = SENTENCES[i % 5], SENTENCES[(i + 1) % 5], SENTENCES[(i + 3) % 5]
        texts.append(f"{a} {b} {c} 번호 {i % 7}")
        texts.append(f"{b}\n{a} 새로운 {i % 11}번째 이야기")
    return texts


def _vocab(path) -> dict[str, int]:
    return json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]


def test_superwords_stay_within_sentences_and_word_limit(corpus, tmp_path):
    cfg = TokenizerTrainConfig(kind="superbpe", vocab_size=900, superbpe_transition=450, superbpe_max_words=2)
    r = train_tokenizer(corpus, cfg, tmp_path / "s")
    vocab = _vocab(r.path)
    assert r.vocab_size == 900 and r.stats["stage2_tokens"] == 900 - 450
    texts = [token_text(t) for t in vocab]
    crossing = [t for t in texts if re.search(r"[.!?][^\S\n]", t) or ("\n" in t and t.strip())]
    assert not crossing, f"superwords cross a sentence end or a newline: {crossing[:5]}"
    too_long = [t for t in vocab if superword_words(t) > 2]
    assert not too_long, f"superwords over 2 words: {[token_text(t) for t in too_long[:5]]}"
    assert sum(map(is_superword, vocab)) == r.stats["superword_tokens"] > 0
    assert max(map(superword_words, vocab)) == 2

    unlimited = train_tokenizer(corpus, TokenizerTrainConfig(kind="superbpe", vocab_size=900, superbpe_transition=450,
                                                             superbpe_max_words=None), tmp_path / "u")
    assert max(map(superword_words, _vocab(unlimited.path))) > 2  # the limit is what kept them short
    assert unlimited.stats["stage2_dropped_merges"] == 0 < r.stats["stage2_dropped_merges"]

    tok = load_tokenizer(r.path)
    for text in corpus[-20:] + corpus[:20] + ["청원을 올립니다. 그리고 부탁드립니다"]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_superbpe_training_is_deterministic(corpus, tmp_path):
    cfg = TokenizerTrainConfig(kind="superbpe", vocab_size=800, superbpe_transition=500)
    a = train_tokenizer(corpus, cfg, tmp_path / "a")
    b = train_tokenizer(iter(corpus), cfg, tmp_path / "b")
    assert (a.path / "tokenizer.json").read_bytes() == (b.path / "tokenizer.json").read_bytes()
    assert a.stats == b.stats


def test_superword_words_counts_whitespace_separated_words():
    assert superword_words("Ġ수Ġìŀĺ") == 2 and superword_words("Ġ수") == 1 and superword_words("ĠĠ") == 0
    with pytest.raises(ConfigError, match="superbpe_max_words"):
        TokenizerTrainConfig(kind="superbpe", vocab_size=1000, superbpe_max_words=0)


def test_stage2_min_chars_leaves_short_documents_out_of_stage2(corpus, tmp_path):
    short = ["우리 팀 화이팅 우리 팀 화이팅"] * 80  # short documents: the only source of this superword
    texts = corpus + short

    def superwords(min_chars: int, name: str) -> set[str]:
        cfg = TokenizerTrainConfig(kind="superbpe", vocab_size=800, superbpe_transition=500, superbpe_stage2_min_chars=min_chars)
        return {token_text(t) for t in _vocab(train_tokenizer(texts, cfg, tmp_path / name).path) if is_superword(t)}

    assert any("팀 화이팅" in t for t in superwords(0, "all"))
    assert not any("팀 화이팅" in t for t in superwords(200, "long"))
    with pytest.raises(DataError, match="superbpe_stage2_min_chars=100000"):
        train_tokenizer(texts, TokenizerTrainConfig(kind="superbpe", vocab_size=800, superbpe_transition=500,
                                                    superbpe_stage2_min_chars=100_000), tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_word_limit_drops_long_merges_and_those_built_on_them():
    from koforge.tokenizers.bpe import _keep_merges

    vocab = {t: i for i, t in enumerate(["a", "b", "c", "Ġb", "Ġc", "Ġd"])}
    stage2 = [("a", "Ġb"), ("aĠb", "Ġc"), ("aĠbĠc", "Ġd"), ("b", "c"), ("Ġb", "Ġc")]
    merges: list = []
    added, dropped = _keep_merges(stage2, lambda s: s, vocab, merges, n_new=3, max_words=2)
    # "a b c" has 3 words: dropped, and "a b c d" (built on it) with it; the budget is filled from later merges
    assert merges == [("a", "Ġb"), ("b", "c"), ("Ġb", "Ġc")] and (added, dropped) == (3, 2)
    assert list(vocab)[-3:] == ["aĠb", "bc", "ĠbĠc"]


def test_eval_reports_the_share_of_superword_tokens_in_the_text(corpus, tmp_path):
    from koforge.tokenizers.evaluate import evaluate_tokenizers

    sbpe = train_tokenizer(corpus, TokenizerTrainConfig(kind="superbpe", vocab_size=900, superbpe_transition=450), tmp_path / "s")
    bpe = train_tokenizer(corpus, TokenizerTrainConfig(kind="bpe", vocab_size=900), tmp_path / "b")
    texts = corpus[-40:]
    rows = {r["tokenizer"]: r for r in evaluate_tokenizers({"super": sbpe.path, "plain": bpe.path}, {"t": texts}).rows}
    tok = load_tokenizer(sbpe.path)
    pieces = [tok.convert_ids_to_tokens(i) for t in texts for i in tok(t, add_special_tokens=False)["input_ids"]]
    assert rows["super"]["superword_rate"] == sum(map(is_superword, pieces)) / len(pieces) > 0
    assert rows["plain"]["superword_rate"] == 0  # whitespace pre-tokenisation: no token spans two words

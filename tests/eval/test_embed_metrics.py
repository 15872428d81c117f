"""Ranking metrics by hand, and the evaluators on a deterministic fake encoder."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from char_encoder import CharEncoder

from koforge._utils.errors import ConfigError, DataError
from koforge.eval import metrics as M
from koforge.eval.bitext import evaluate_bitext
from koforge.eval.korsts import evaluate_korsts, read_sts_pairs
from koforge.eval.retrieval import evaluate_korquad_retrieval
from koforge.eval.separation import evaluate_separation


def test_ndcg_map_recall_precision_by_hand():
    ranked, rel = [5, 2, 7, 1], {2, 1}
    ideal = 1 + 1 / math.log2(3)
    assert M.ndcg_at_k(ranked, rel, 10) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert M.average_precision_at_k(ranked, rel, 10) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert M.recall_at_k(ranked, rel, 3) == pytest.approx(0.5)
    assert M.precision_at_k(ranked, rel, 10) == pytest.approx(0.2)
    assert M.ndcg_at_k([3, 4], {3}, 10) == 1.0 and M.ndcg_at_k([4, 3], set(), 10) == 0.0
    agg = M.retrieval_metrics([[0, 1], [1, 0]], [{0}, {0}], k=10)
    assert agg["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert agg["map@10"] == pytest.approx(0.75)


def test_top_k_ties_keep_lower_index():
    assert M.top_k(np.array([[0.5, 0.9, 0.9, 0.1]]), 3).tolist() == [[1, 2, 0]]


def test_korsts_matches_scipy(assets):
    enc = CharEncoder()
    s1, s2, gold = read_sts_pairs(assets / "embed_sts.tsv")
    got = evaluate_korsts(enc, assets / "embed_sts.tsv")
    cos = M.paired_cosine(enc.encode(s1), enc.encode(s2))
    assert got["primary"] == pytest.approx(spearmanr(cos, gold).statistic, abs=1e-6)
    assert got["n_pairs"] == 40


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_korsts_split_names_read_that_split_of_a_data_dir(assets, tmp_path, split):
    import shutil

    shutil.copy(assets / "embed_sts.tsv", tmp_path / f"sts-{split}.tsv")
    by_name = evaluate_korsts(CharEncoder(), split, data_dir=tmp_path)
    assert by_name["primary"] == evaluate_korsts(CharEncoder(), assets / "embed_sts.tsv")["primary"]
    assert by_name["n_pairs"] == 40


def test_evaluators_refuse_a_model_path_and_one_string(assets):
    with pytest.raises(ConfigError, match="is a name or path, not a loaded model. Load it first"):
        evaluate_korsts(str(assets), assets / "embed_sts.tsv")
    from koforge.eval._encode import encode

    with pytest.raises(ConfigError, match="not one string"):
        encode(CharEncoder(), "한 문장")


def test_korsts_max_pairs_is_a_seeded_sample_not_the_first_rows(assets):
    from koforge.eval.korsts import read_sts_pairs

    s1, _, _ = read_sts_pairs(assets / "embed_sts.tsv")
    seen = []

    class Recorder(CharEncoder):
        def encode(self, texts, **kw):
            seen.append(list(texts))
            return super().encode(texts, **kw)

    evaluate_korsts(Recorder(), assets / "embed_sts.tsv", max_pairs=10)
    evaluate_korsts(Recorder(), assets / "embed_sts.tsv", max_pairs=10)
    first = seen[0][:10]
    assert seen[0] == seen[1] and first != s1[:10] and all(t in s1 for t in first)
    assert [s1.index(t) for t in first] == sorted(s1.index(t) for t in first)  # file order kept


def test_korsts_missing_column(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\n가\t나\n", encoding="utf-8")
    with pytest.raises(DataError, match="score"):
        evaluate_korsts(CharEncoder(), bad)
    # A JSONL file given as the TSV: named as such, not printed whole.
    petition = json.dumps({"category": "정치개혁", "content": "청원 내용입니다. " * 500}, ensure_ascii=False)
    bad.write_text(petition + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        evaluate_korsts(CharEncoder(), bad)
    assert "(found: a JSON line, not a tab-separated header: this looks like a .jsonl file)" in str(err.value)
    assert len(str(err.value)) < 400
    bad.write_text("\t".join(["x" * 100] + [f"c{i}" for i in range(20)]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"found: x{37}\.\.\., c0, .*c8, \.\.\. \(21 columns\)"):
        evaluate_korsts(CharEncoder(), bad)


def test_korsts_needs_two_scored_pairs_and_says_what_it_skipped(assets, tmp_path, caplog):
    """Spearman of one pair (or of equal scores) is no figure: an error, not a 0.0000."""
    one = tmp_path / "one.tsv"
    one.write_text("sentence1\tsentence2\tscore\n가\t나\t3\n다\t라\tabc\n마\n", encoding="utf-8")
    with caplog.at_level("WARNING"), pytest.raises(DataError, match=r"has 1 usable .* row\(s\); a correlation needs at "
                                                                    "least two pairs with different scores"):
        evaluate_korsts(CharEncoder(), one)
    assert "2 row(s) skipped, with too few columns or a score that is not a number (line(s) 3, 4)" in caplog.text
    same = tmp_path / "same.tsv"
    same.write_text("sentence1\tsentence2\tscore\n가\t나\t3\n다\t라\t3\n", encoding="utf-8")
    with pytest.raises(DataError, match="all scored alike"):
        evaluate_korsts(CharEncoder(), same)
    with pytest.raises(DataError, match=r"a sample of 1 pair\(s\) \(max_pairs / --max-items\) holds 1 usable"):
        evaluate_korsts(CharEncoder(), assets / "embed_sts.tsv", max_pairs=1)


def test_retrieval_on_mini_korquad(assets):
    got = evaluate_korquad_retrieval(CharEncoder(), assets / "embed_korquad.json")
    assert got["n_docs"] == 2 and got["n_queries"] == 4
    assert 0.0 < got["primary"] <= 1.0 and got["recall@10"] == 1.0  # 2 docs: all are in the top 10
    assert got["p@10"] == pytest.approx(0.1) and got["primary"] >= 1 / math.log2(3)


def test_separation_default_set_and_exact_gap(tmp_path):
    got = evaluate_separation(CharEncoder())
    assert got["n_pairs"] == 60 and len(got["per_domain"]) == 10
    assert got["primary"] == pytest.approx(got["similar_cos"] - got["different_cos"])
    assert got["primary"] > 0  # paraphrases share characters
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"domain": "a", "text1": "x", "label": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match="text2"):
        evaluate_separation(CharEncoder(), bad)


def test_separation_domain_with_one_kind_of_pair_is_null_not_nan(tmp_path, caplog):
    """NaN is not JSON: a domain without both kinds of pair gets null and a warning; a file with one kind, an error."""
    import json

    from koforge._utils.io import write_json

    pairs = tmp_path / "p.jsonl"
    rows = [("a", "가나", "가나다", 1), ("a", "가나", "라마", 0), ("b", "바사", "바사아", 1)]
    pairs.write_text("".join(json.dumps({"domain": d, "text1": x, "text2": y, "label": lab}) + "\n"
                             for d, x, y, lab in rows), encoding="utf-8")
    with caplog.at_level("WARNING"):
        got = evaluate_separation(CharEncoder(), pairs)
    assert got["per_domain"]["b"] is None and isinstance(got["per_domain"]["a"], float)
    assert "domain(s) b hold only one kind of pair" in caplog.text
    assert json.loads(write_json(tmp_path / "out.json", got).read_text())["per_domain"]["b"] is None
    pairs.write_text(json.dumps({"domain": "a", "text1": "x", "text2": "y", "label": 1}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"holds only similar \(1\) pairs; the separation score needs both"):
        evaluate_separation(CharEncoder(), pairs)


def test_bitext_identity_is_perfect(assets, tmp_path):
    got = evaluate_bitext(CharEncoder(), assets / "embed_ko.txt", assets / "embed_ko.txt")
    assert got["primary"] == 1.0 and got["n_pairs"] == 12
    short = tmp_path / "short.en"
    short.write_text("one\n", encoding="utf-8")
    with pytest.raises(DataError, match="line-aligned"):
        evaluate_bitext(CharEncoder(), assets / "embed_ko.txt", short)


def test_map_divides_by_all_relevant_like_trec_eval():
    """MAP@k is trec_eval's map_cut (what MTEB reports): a query with more relevant items than k cannot reach 1."""
    ranked, rel = [0, 1, 2, 3, 4], {0, 2, 4}
    assert M.average_precision_at_k(ranked, rel, 2) == pytest.approx(1 / 3)
    assert M.average_precision_at_k(ranked, rel, 3) == pytest.approx((1 + 2 / 3) / 3)
    assert M.average_precision_at_k(ranked, rel, 10) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_ranking_metrics_match_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rankings, relevant = [[0, 1, 2, 3, 4], [1, 3, 0, 2, 4], [4, 3, 2, 1, 0]], [{0, 2, 4}, {3}, {0, 1}]
    qrels = {f"q{i}": {f"d{d}": 1 for d in rel} for i, rel in enumerate(relevant)}
    run = {f"q{i}": {f"d{d}": 10.0 - r for r, d in enumerate(ranked)} for i, ranked in enumerate(rankings)}
    for k in (1, 2, 3, 10):
        ref = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}", f"map_cut.{k}", f"recall.{k}", f"P.{k}"}).evaluate(run)
        got = M.retrieval_metrics(rankings, relevant, k)
        for mine, theirs in (("ndcg", "ndcg_cut"), ("map", "map_cut"), ("recall", "recall"), ("p", "P")):
            expected = np.mean([ref[q][f"{theirs}_{k}"] for q in qrels])
            assert got[f"{mine}@{k}"] == pytest.approx(expected, abs=1e-12), (mine, k, got, expected)


def _korquad(path, paragraphs):
    """A SQuAD-format file of (context, [questions]) pairs, one article."""
    data = {"data": [{"title": "t", "paragraphs": [{"context": c, "qas": [{"id": f"{i}-{j}", "question": q, "answers": []}
                                                                         for j, q in enumerate(qs)]}
                                                   for i, (c, qs) in enumerate(paragraphs)]}]}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_retrieval_counts_a_duplicated_paragraph_once(tmp_path):
    """KorQuAD 1.0 dev repeats 3 contexts verbatim: a question on the second copy must not lose to the first,
    whose embedding is the same (the tie went to the lower index, so a perfect encoder scored < 1)."""
    path = _korquad(tmp_path / "dup.json", [("가나다라", ["가나다라"]), ("마바사아", ["마바사아"]), ("가나다라", ["가나다라"])])
    got = evaluate_korquad_retrieval(CharEncoder(), path)
    assert got["n_docs"] == 2 and got["n_queries"] == 3
    assert got["ndcg@10"] == 1.0 and got["map@10"] == 1.0 and got["recall@10"] == 1.0


def test_bitext_counts_a_retrieved_duplicate_of_the_translation_as_correct(tmp_path):
    """korean-english-park.test.en repeats lines ('Ideal temperature:' 5 times): a retrieved line that the files
    pair with the query's text is a translation, whichever copy wins the tie (it cost up to 111 of 2,000 pairs)."""
    ko, en = tmp_path / "b.ko", tmp_path / "b.en"
    ko.write_text("가나\n다라\n가나마\n바사\n", encoding="utf-8")
    en.write_text("가나\n다라\n가나\n아자\n", encoding="utf-8")
    got = evaluate_bitext(CharEncoder(), ko, en)
    # 가나마 -> the first 가나 (a copy of its translation); English 가나 #2 -> 가나 (paired with 가나 on line 1);
    # 바사 / 아자 share nothing with anything: really wrong
    assert got["ko2en"] == pytest.approx(3 / 4) and got["en2ko"] == pytest.approx(3 / 4), got


def test_bitext_and_separation_split_lines_on_newlines_only(tmp_path):
    """str.splitlines also splits on U+2028, U+0085, form feeds...: a scraped sentence holding one broke the
    alignment (or a JSON line), though `wc -l` and every editor count one line."""
    ko, en = tmp_path / "b.ko", tmp_path / "b.en"
    ko.write_text("가나\u2028다\r\n라마\n", encoding="utf-8")
    en.write_text("가나다\n라마\x85\n", encoding="utf-8")
    got = evaluate_bitext(CharEncoder(), ko, en)
    assert got["n_pairs"] == 2 and got["primary"] == 1.0, got
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("".join(json.dumps({"domain": "a", "text1": x, "text2": y, "label": lab}, ensure_ascii=False) + "\n"
                             for x, y, lab in [("가\u2028나", "가나", 1), ("가", "라", 0)]), encoding="utf-8")
    assert evaluate_separation(CharEncoder(), pairs)["n_pairs"] == 2


def test_korsts_skips_non_finite_scores(tmp_path, caplog):
    """float('nan') parses: a 'NaN' score cell (pandas' missing value) made the Spearman NaN instead of a skipped row."""
    path = tmp_path / "s.tsv"
    path.write_text("sentence1\tsentence2\tscore\n가나\t가나\t5\n가나\t다라\t0\n가다\t가라\t2.5\n마바\t마사\tNaN\n",
                    encoding="utf-8")
    with caplog.at_level("WARNING"):
        got = evaluate_korsts(CharEncoder(), path)
    assert got["n_pairs"] == 3 and math.isfinite(got["spearman"])
    assert "line(s) 5" in caplog.text


def test_korsts_on_constant_predictions_is_zero_not_nan(tmp_path):
    """A collapsed encoder (one vector for every text): Spearman was 0.0 but Pearson NaN (and a numpy warning)."""
    class Constant:
        def encode(self, texts, **_):
            return np.ones((len(texts), 8), dtype=np.float32)

    path = tmp_path / "s.tsv"
    path.write_text("sentence1\tsentence2\tscore\n가\t나\t5\n다\t라\t0\n", encoding="utf-8")
    got = evaluate_korsts(Constant(), path)
    assert got["spearman"] == 0.0 and got["pearson"] == 0.0

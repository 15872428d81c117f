"""diff (filters, frequency ranking, JSON), analyze, and the three row initialisations."""
from __future__ import annotations

import json

import torch
from transformers import AutoTokenizer
from typer.testing import CliRunner

from koforge.vocab.analyze import analyze_expansion
from koforge.vocab.config import ExpansionConfig
from koforge.vocab.diff import diff_vocabularies
from koforge.vocab.init_embeddings import focus_rows, mean_rows, new_rows, row_stats


def test_diff_is_real_hangul_text_and_new(tok_dirs, model_dirs, tmp_path):
    out = tmp_path / "new.json"
    diff = diff_vocabularies(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(), output=out)
    base = AutoTokenizer.from_pretrained(model_dirs["qwen3"])
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["stats"]["new_tokens"] == len(diff.tokens) == len(data["tokens"]) > 100
    for tok in diff.tokens:
        assert tok.text.strip() and all("가" <= ch <= "힣" or ch == " " or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f" for ch in tok.text)
        assert len(base(tok.text, add_special_tokens=False)["input_ids"]) > 1  # really new to the base
    assert len({t.text for t in diff.tokens}) == len(diff.tokens)


def test_diff_frequency_ranking_min_frequency_and_cap(tok_dirs, model_dirs, assets):
    cfg = ExpansionConfig(reference=str(assets / "vocab_ko.txt"), min_frequency=5, max_new_tokens=20)
    diff = diff_vocabularies(model_dirs["qwen3"], tok_dirs["donor"], cfg)
    freqs = [t.frequency for t in diff.tokens]
    assert len(freqs) == 20 and min(freqs) >= 5 and freqs == sorted(freqs, reverse=True)
    assert diff.stats["excluded"]["over_max_new_tokens"] > 0


def test_diff_wordpiece_base_drops_word_start_space(tok_dirs, model_dirs):
    diff = diff_vocabularies(model_dirs["bert"], tok_dirs["donor"], ExpansionConfig())
    assert all(not t.text.startswith(" ") for t in diff.tokens)


def test_analyze_rows_cover_both_modes(tok_dirs, model_dirs, assets):
    result = analyze_expansion(model_dirs["qwen3"], tok_dirs["donor"], [assets / "vocab_ko.txt"])
    names = [r["tokenizer"] for r in result.rows]
    assert names == ["base", "donor", "base+added-tokens", "base+merge"]
    base, added = result.rows[0], result.rows[2]
    assert added["tokens_per_line"] < base["tokens_per_line"] and added["english_unchanged"] == 1.0
    assert added["syllable_coverage"] > base["syllable_coverage"]
    assert not any("measured on the first" in n for n in result.notes)  # the whole file was read
    from koforge.vocab.config import ExpansionConfig

    sampled = analyze_expansion(model_dirs["qwen3"], tok_dirs["donor"], [assets / "vocab_ko.txt"], ExpansionConfig(eval_max_lines=3))
    assert sampled.notes[0] == (f"measured on the first 3 lines of '{assets / 'vocab_ko.txt'}' (eval_max_lines); "
                                "set eval_max_lines=N to read more")
    n_lines = len([line for line in (assets / "vocab_ko.txt").read_text(encoding="utf-8").splitlines() if line.strip()])
    whole = analyze_expansion(model_dirs["qwen3"], tok_dirs["donor"], [assets / "vocab_ko.txt"], ExpansionConfig(eval_max_lines=n_lines))
    assert not any("measured on the first" in n for n in whole.notes)  # exactly eval_max_lines lines: read whole


def test_sentencepiece_style_base_keeps_new_tokens_normalized(tok_dirs, assets):
    """A normalizer that prepends "▁" is not Hangul decomposition: new tokens matched on the raw text would split
    the input before it, and every split piece would decode with a stray "▁" (Llama-2 / Mistral-style bases)."""
    ko = [line for line in (assets / "vocab_ko.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    result = analyze_expansion(tok_dirs["sp"], tok_dirs["donor"], ko)
    base, added = result.rows[0], result.rows[2]
    assert base["roundtrip"] == 1.0 and added["roundtrip"] == 1.0
    assert added["tokens_per_line"] < base["tokens_per_line"] and added["english_unchanged"] == 1.0
    assert not any("normalized=False" in n for n in result.notes)
    assert result.recommended_mode in ("added-tokens", "merge")


def test_report_warns_when_expansion_reads_korean_worse():
    from koforge.vocab.report import quality_warnings

    before = {"roundtrip": 1.0, "tokens_per_line": 20.0}
    assert quality_warnings(before, {"roundtrip": 1.0, "tokens_per_line": 15.0}, "merge") == []
    warned = quality_warnings(before, {"roundtrip": 0.03, "tokens_per_line": 25.0}, "added-tokens")
    assert len(warned) == 2 and "3.0% of the Korean eval lines" in warned[0] and "mode=merge" in warned[1]


def test_cli_analyze_and_diff(tok_dirs, model_dirs, assets, tmp_path):
    from koforge.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["expand", "analyze", str(model_dirs["bert"]), str(tok_dirs["donor"]), "--text", str(assets / "vocab_ko.txt")])
    assert r.exit_code == 0, r.output
    assert "base+" in r.output and "supports BPE" in r.output  # merge refused for WordPiece, as a note
    header = next(line for line in r.output.splitlines() if "┳" in line)
    assert header.count("┳") == 8  # 9 columns: english_unchanged and added (only in later rows) are shown too
    (tmp_path / "a.json").write_text("keep")
    analyze = ["expand", "analyze", str(model_dirs["bert"]), str(tok_dirs["donor"]), "--text", str(assets / "vocab_ko.txt"),
               "-o", str(tmp_path / "a.json")]
    r = runner.invoke(app, analyze)
    assert r.exit_code == 1 and "already exists" in r.output and (tmp_path / "a.json").read_text() == "keep"
    r = runner.invoke(app, [*analyze, "--overwrite"])
    assert r.exit_code == 0 and json.loads((tmp_path / "a.json").read_text()), r.output
    r = runner.invoke(app, ["expand", "diff", str(model_dirs["qwen3"]), str(tok_dirs["donor"]), "-o", str(tmp_path / "d.json"), "max_new_tokens=5"])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "d.json").read_text())["tokens"]) == 5


def test_mean_init_is_the_mean_of_the_pieces():
    torch.manual_seed(0)
    w = torch.randn(10, 4)
    rows = mean_rows(w, [[1, 2], [3], [4, 5, 6]])
    assert torch.allclose(rows[0], (w[1] + w[2]) / 2) and torch.equal(rows[1], w[3])
    assert torch.allclose(rows[2], w[4:7].mean(0))


def test_random_init_follows_old_row_statistics_and_seed():
    torch.manual_seed(0)
    w = torch.randn(5000, 8) * 3 + 1
    mean, std = row_stats(w, 5000, chunk=777)
    assert torch.allclose(mean, w.mean(0), atol=1e-5) and torch.allclose(std, w.std(0, unbiased=False), atol=1e-4)
    a, _ = new_rows(w, 5000, ["가"] * 3000, [[0]] * 3000, init="random", noise_std=0, generator=torch.Generator().manual_seed(1))
    b, _ = new_rows(w, 5000, ["가"] * 3000, [[0]] * 3000, init="random", noise_std=0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and abs(a.mean().item() - 1) < 0.1 and abs(a.std().item() - 3) < 0.1


def test_noise_is_scaled_by_old_std():
    w = torch.randn(100, 4)
    clean, _ = new_rows(w, 100, ["가"], [[1, 2]], init="mean", noise_std=0, generator=torch.Generator().manual_seed(0))
    noisy, _ = new_rows(w, 100, ["가"], [[1, 2]], init="mean", noise_std=0.5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(clean, noisy) and (noisy - clean).abs().max() < 5


def test_focus_combines_similar_old_tokens():
    w = torch.eye(4)
    fallback = torch.full((2, 4), 9.0)
    rows, fell_back = focus_rows(w, ["하다", "xyz"], [0, 1, 2], ["하다가", "먹다", "학교"], fallback, top_k=2, temperature=0.05)
    assert fell_back == 1 and torch.equal(rows[1], fallback[1])
    assert rows[0][0] > 0.5 and rows[0][3] == 0 and torch.isclose(rows[0].sum(), torch.tensor(1.0))

"""Demo step 1: train a Korean byte-level BPE on the bundled reviews; compare it with the base model's tokenizer.

The base model of the demo is all-MiniLM-L6-v2, whose WordPiece vocabulary
turns Hangul into jamo; the table shows characters per token and tokens per
text (a held-out review, a KorSTS sentence) for both tokenizers.
"""
from __future__ import annotations

from pathlib import Path

from koforge.demo.pipeline import DemoContext, StepResult, StepUnavailable, minilm_path, require_area
from koforge.eval.runner import result_from_raw, sample_path
from koforge.eval.schema import write_result


def train_korean_tokenizer(ctx: DemoContext, path: Path):
    train = require_area("koforge.tokenizers.train")
    cfg = train.TokenizerTrainConfig(kind="bpe", vocab_size=ctx.config.vocab_size)
    return train.train_tokenizer(ctx.train_texts(), cfg, path, overwrite=True)


def unpadded_tokenizer(path: Path):
    """A tokenizer with its backend's fixed padding / truncation turned off (see `counting_backend`)."""
    from koforge.tokenizers.io import load_tokenizer

    tok = load_tokenizer(path)
    tok.backend_tokenizer.no_padding()
    tok.backend_tokenizer.no_truncation()
    return tok


def _korsts_sentences(limit: int) -> list[str]:
    from koforge.eval.korsts import read_sts_pairs

    s1, s2, _ = read_sts_pairs(sample_path("korsts_test.tsv"))
    return (s1 + s2)[:limit]


def run(ctx: DemoContext) -> StepResult:
    evaluate = require_area("koforge.tokenizers.evaluate")
    folder = ctx.folder("tokenizer")
    trained = train_korean_tokenizer(ctx, folder / "ko-bpe")
    tokenizers = {"koforge-ko-bpe": str(trained.path)}
    try:
        tokenizers["all-MiniLM-L6-v2"] = unpadded_tokenizer(minilm_path())
    except StepUnavailable:
        pass  # the comparison row is optional; the trained tokenizer is still measured
    reference = "all-MiniLM-L6-v2" if len(tokenizers) > 1 else None
    texts = {"nsmc-heldout": ctx.heldout_texts(), "korsts": _korsts_sentences(2 * ctx.config.heldout_docs)}
    comparison = evaluate.evaluate_tokenizers(tokenizers, texts, reference=reference)
    comparison.to_json(folder / "tokenizer_comparison.json")
    png = comparison.plot(folder / "chars_per_token.png")
    mine = {r["text_set"]: r for r in comparison.rows if r["tokenizer"] == "koforge-ko-bpe"}
    theirs = {r["text_set"]: r for r in comparison.rows if r["tokenizer"] == reference}
    metrics = {f"{s}.chars_per_token": r["chars_per_token"] for s, r in mine.items()}
    metrics.update({f"{s}.tokens_per_document": r["tokens_per_text"] for s, r in mine.items() if "tokens_per_text" in r})
    metrics.update({f"{s}.tokens_vs_minilm": r["tokens_vs_reference"] for s, r in mine.items()
                    if r.get("tokens_vs_reference") is not None})
    metrics["chars_per_token"] = sum(r["chars_per_token"] for r in mine.values()) / len(mine)
    # Primary: the held-out reviews' figure the headline prints, not the mean of two text sets' ratios.
    result = result_from_raw("tokenizer", str(trained.path), metrics, primary="nsmc-heldout.chars_per_token",
                             settings={"vocab_size": trained.vocab_size, "train_documents": trained.documents,
                                       "train_seconds": round(trained.seconds, 2), "reference": reference},
                             plots=[png.name])
    write_result(result, folder)
    cpt = mine["nsmc-heldout"]["chars_per_token"]
    headline = f"{trained.vocab_size:,}-token BPE in {trained.seconds:.1f} s: {cpt:.2f} chars/token on held-out reviews"
    if theirs:
        headline += f" (MiniLM {theirs['nsmc-heldout']['chars_per_token']:.2f})"
    keys = ("tokenizer", "text_set", "vocab_size", "chars_per_token", "tokens_per_text", "unk_rate", "tokens_vs_reference")
    rows = [{k: r.get(k) for k in keys} for r in comparison.rows]
    return StepResult(name="tokenizer", headline=headline, metrics=metrics, tables={"Tokenizers on Korean text": rows},
                      artifacts=[folder / "tokenizer_comparison.json", png])

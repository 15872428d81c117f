"""Demo step 2a: expand all-MiniLM-L6-v2 with the Hangul tokens of the Korean tokenizer.

Old token ids and rows stay as they are; the new rows start as the mean of the
base rows of the pieces the old tokenizer gives for each new token. The
expansion report (tokens per held-out review, unknown-token rate before and
after) lands beside the model, where the report finds it.
"""
from __future__ import annotations

from pathlib import Path

from koforge.demo.pipeline import DemoContext, StepResult, minilm_path, require_area
from koforge.eval.runner import result_from_raw
from koforge.eval.schema import write_result


def expand_minilm(ctx: DemoContext, path: Path):
    cfg_mod = require_area("koforge.vocab.config")
    expand = require_area("koforge.vocab.expand")
    base = minilm_path()
    donor = ctx.korean_tokenizer()
    train = ctx.data_file("train.txt")
    config = cfg_mod.ExpansionConfig(mode="added-tokens", init="mean", script="hangul", reference=str(train),
                                     reference_max_lines=ctx.config.tokenizer_docs,
                                     max_new_tokens=ctx.config.max_new_tokens,
                                     korean_eval=str(ctx.data_file("heldout.txt")),
                                     eval_max_lines=ctx.config.heldout_docs, seed=ctx.config.seed)
    return expand.expand_vocabulary(base, donor, config, path, overwrite=True)


def tokens_per_text(tokenizer_path: Path, texts: list[str]) -> float:
    """Mean tokens per text, specials excluded, with the tokenizer's fixed padding/truncation off."""
    from koforge.demo.tokenizer_step import unpadded_tokenizer

    backend = unpadded_tokenizer(tokenizer_path).backend_tokenizer
    return sum(len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)) / max(1, len(texts))


def run(ctx: DemoContext) -> StepResult:
    folder = ctx.folder("expand")
    result = expand_minilm(ctx, folder / "model")
    r = result.report
    ko = r["korean_eval"]
    texts = ctx.heldout_texts()
    before, after = tokens_per_text(minilm_path(), texts), tokens_per_text(result.path, texts)  # a text is one NSMC review
    ko["tokens_per_line_before"], ko["tokens_per_line_after"], ko["token_reduction"] = before, after, 1 - after / before
    metrics = {"vocab_before": r["base_vocab_size"], "vocab_after": r["expanded_vocab_size"], "added": r["num_added"],
               "tokens_per_review_before": before, "tokens_per_review_after": after,
               "token_reduction": ko["token_reduction"],
               "unk_rate_before": ko["unk_rate_before"], "unk_rate_after": ko["unk_rate_after"],
               "english_unchanged_share": r["english_eval"]["unchanged_share"]}
    write_result(result_from_raw("expansion", str(result.path), metrics, primary="tokens_per_review_after",
                                 higher_is_better=False, settings={"base": r["base"], "donor": r["donor"], "mode": r["mode"], "init": r["init"]}),
                 folder)
    headline = (f"vocab {r['base_vocab_size']:,} -> {r['expanded_vocab_size']:,}; tokens/review "
                f"{ko['tokens_per_line_before']:.1f} -> {ko['tokens_per_line_after']:.1f}; "
                f"[UNK] {ko['unk_rate_before']:.1%} -> {ko['unk_rate_after']:.1%}")
    return StepResult(name="expand", headline=headline, metrics=metrics,
                      tables={"Expansion of all-MiniLM-L6-v2": [{"figure": k, "value": v} for k, v in metrics.items()]},
                      artifacts=[result.path / "expansion_report.json"])

"""The expansion report: JSON (machine-readable, read by the embeddings pipeline) and Markdown.

Keys every consumer may rely on: `base_vocab_size`, `expanded_vocab_size`,
`added_token_ids` (the exact new ids, in order), `added_tokens` (their texts).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from koforge.config import config_to_dict
from koforge.vocab.analyze import tokenizer_stats, unchanged_share
from koforge.vocab.loading import id_space


@torch.no_grad()
def row_statistics(weight: torch.Tensor, n_old: int, new_ids: Sequence[int], sample: int = 2048, seed: int = 0) -> dict[str, float]:
    """Norm mean/std of old and new rows, and mean cosine new-vs-old and old-vs-old (on a sample of old rows)."""
    gen = torch.Generator().manual_seed(seed)
    old_idx = torch.randperm(n_old, generator=gen)[: min(sample, n_old)]
    old = weight[old_idx].float()
    new = weight[torch.tensor(list(new_ids), dtype=torch.long)].float()
    old_norm, new_norm = old.norm(dim=1), new.norm(dim=1)
    on, nn_ = old / old_norm.clamp_min(1e-12)[:, None], new / new_norm.clamp_min(1e-12)[:, None]
    cross = (nn_[:sample] @ on.T).mean().item()
    within = on @ on.T
    k = within.shape[0]
    within_mean = ((within.sum() - within.diagonal().sum()) / max(k * (k - 1), 1)).item()
    return {
        "old_norm_mean": old_norm.mean().item(), "old_norm_std": old_norm.std().item() if len(old_norm) > 1 else 0.0,
        "new_norm_mean": new_norm.mean().item(), "new_norm_std": new_norm.std().item() if len(new_norm) > 1 else 0.0,
        "mean_cosine_new_old": cross, "mean_cosine_old_old": within_mean,
    }


def quality_warnings(before: dict[str, Any], after: dict[str, Any], mode: str) -> list[str]:
    """Warnings when the expanded tokenizer reads the Korean eval text worse than the base did."""
    other = "merge" if mode == "added-tokens" else "added-tokens"
    warnings = []
    if after["roundtrip"] < before["roundtrip"]:
        warnings.append(f"WARNING: {after['roundtrip']:.1%} of the Korean eval lines decode back exactly, against "
                        f"{before['roundtrip']:.1%} with the base tokenizer; compare mode={other} with "
                        "`koforge expand analyze` before training this model.")
    if after["tokens_per_line"] > before["tokens_per_line"]:
        warnings.append(f"WARNING: Korean eval lines take more tokens after expansion ({before['tokens_per_line']:.2f} -> "
                        f"{after['tokens_per_line']:.2f}); compare mode={other} with `koforge expand analyze`.")
    return warnings


def build_report(*, base_tok: Any, new_tok: Any, model: Any, expanded: Any, diff_stats: dict, n_base: int,
                 rows: tuple[int, int], init_info: dict, korean: list[str], english: list[str], korean_source: str,
                 base_name: str, donor_name: str, config: Any, seconds: float, copied: list[str]) -> dict[str, Any]:
    """The report dict written as expansion_report.json."""
    before = tokenizer_stats(base_tok, korean, "base")
    after = tokenizer_stats(new_tok, korean, "expanded")
    emb = model.get_input_embeddings().weight
    stats = {"input": row_statistics(emb, n_base, expanded.added_ids, seed=config.seed)}
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None and out.weight.data_ptr() != emb.data_ptr():
        stats["output"] = row_statistics(out.weight, n_base, expanded.added_ids, seed=config.seed)
    return {
        "base": base_name,
        "donor": donor_name,
        "mode": expanded.mode,
        "init": config.init,
        "base_vocab_size": n_base,
        "expanded_vocab_size": id_space(new_tok),
        "embedding_rows": {"before": rows[0], "after": rows[1]},
        "num_added": len(expanded.added_ids),
        "added_token_ids": list(expanded.added_ids),
        "added_tokens": list(expanded.added_texts),
        "unreachable_in_merge_mode": len(expanded.unreachable),
        "korean_eval": {"source": korean_source, "lines": len(korean),
                        "tokens_per_line_before": before["tokens_per_line"], "tokens_per_line_after": after["tokens_per_line"],
                        "token_reduction": 1 - after["tokens_per_line"] / max(before["tokens_per_line"], 1e-12),
                        "unk_rate_before": before["unk_rate"], "unk_rate_after": after["unk_rate"],
                        "syllable_coverage_before": before["syllable_coverage"], "syllable_coverage_after": after["syllable_coverage"],
                        "roundtrip_before": before["roundtrip"], "roundtrip_after": after["roundtrip"]},
        "english_eval": {"source": config.english_eval or "builtin", "lines": len(english),
                         "unchanged_share": unchanged_share(base_tok, new_tok, english)},
        "row_statistics": stats,
        "init_details": init_info,
        "diff": diff_stats,
        "notes": list(expanded.notes) + quality_warnings(before, after, expanded.mode),
        "sentence_transformers_files": copied,
        "seconds": seconds,
        "config": config_to_dict(config),
    }


def report_markdown(r: dict[str, Any]) -> str:
    """A short human-readable summary of a report dict."""
    ko, en = r["korean_eval"], r["english_eval"]
    lines = [
        "# Vocabulary expansion report", "",
        f"- base: `{r['base']}`  donor: `{r['donor']}`  mode: **{r['mode']}**  init: **{r['init']}**",
        f"- vocabulary: {r['base_vocab_size']:,} -> {r['expanded_vocab_size']:,} (+{r['num_added']:,}); "
        f"embedding rows {r['embedding_rows']['before']:,} -> {r['embedding_rows']['after']:,}",
        f"- new token ids: {r['added_token_ids'][0]} .. {r['added_token_ids'][-1]}" if r["added_token_ids"] else "- no new token",
        "", "| figure | before | after |", "|---|---|---|",
        f"| tokens per Korean line ({ko['lines']} lines) | {ko['tokens_per_line_before']:.2f} | {ko['tokens_per_line_after']:.2f} |",
        f"| unknown-token rate | {ko['unk_rate_before']:.2%} | {ko['unk_rate_after']:.2%} |",
        f"| Hangul syllables that are one token | {ko['syllable_coverage_before']:.1%} | {ko['syllable_coverage_after']:.1%} |",
        f"| lines that decode back exactly | {ko.get('roundtrip_before', float('nan')):.1%} | {ko.get('roundtrip_after', float('nan')):.1%} |",
        "", f"Korean tokens: {ko['token_reduction']:.1%} fewer. English lines with an unchanged token sequence: "
        f"{en['unchanged_share']:.1%} of {en['lines']} ({en['source']}).", "",
        "| rows | old norm (mean ± std) | new norm (mean ± std) | cos new-old | cos old-old |", "|---|---|---|---|---|",
    ]
    for name, s in r["row_statistics"].items():
        lines.append(f"| {name} | {s['old_norm_mean']:.3f} ± {s['old_norm_std']:.3f} | {s['new_norm_mean']:.3f} ± "
                     f"{s['new_norm_std']:.3f} | {s['mean_cosine_new_old']:.3f} | {s['mean_cosine_old_old']:.3f} |")
    if r["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"

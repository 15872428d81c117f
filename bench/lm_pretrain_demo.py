"""Pretrain the ~10M preset on NSMC reviews + petitions on this CPU for a fixed wall-clock budget.

Pipeline: a byte-level BPE (8,192 ids) trained on a slice of the corpora,
`koforge data pack` shards (2% of documents held out for validation), then
`train_lm` with the `tiny-10m` model preset and the `train-cpu` train preset
for KOFORGE_LM_DEMO_MINUTES minutes (default 20), in bf16 autocast where the CPU
has bf16 natively (KOFORGE_LM_DEMO_PRECISION overrides). Prints the validation bits
per byte curve (and writes it as a PNG), the final figures and ten sampled
generations from fixed prompts. Leaves, under bench_out("lm_pretrain_demo"):
tokenizer/, shards/, run/ (checkpoints) and hf/ (the trained model exported as
LlamaForCausalLM with its tokenizer; the compression bench reuses it).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_out, shared  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KOFORGE_MLFLOW", "off")

MINUTES = float(os.environ.get("KOFORGE_LM_DEMO_MINUTES", "20"))
NSMC_LINES = int(os.environ.get("KOFORGE_LM_DEMO_NSMC", "200000"))
VOCAB = 8192
# One intra-op thread by default: on this shared 2-core machine (load ~10) a 2-thread step measured 2x slower
# than a 1-thread step, because OpenMP barriers wait on descheduled threads. Raise it on a machine of your own.
THREADS = int(os.environ.get("KOFORGE_LM_DEMO_THREADS", "1"))
# bf16 autocast where the CPU has it natively (a step of this batch took 0.30 s against 0.47 s in fp32 here,
# bench/lm_train_speed.py at 8 x 64 tokens); on other CPUs bf16 is emulated and slower, so fp32.
PRECISION = os.environ.get("KOFORGE_LM_DEMO_PRECISION", "native")
PROMPTS = ["이 영화 정말", "배우들의 연기가", "최악의 영화", "감동적인", "스토리가",
           "국민청원", "정부는", "저는 대한민국", "아이들의 교육", "시간 가는 줄"]


def write_corpus(out: Path) -> tuple[Path, Path, int]:
    """NSMC reviews + petition contents, one document per line; every 50th document is validation."""
    data = shared("data/corpora")
    docs: list[str] = []
    with open(data / "nsmc_reviews.txt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= NSMC_LINES:
                break
            if line.strip():
                docs.append(line.strip())
    for p in sorted(data.glob("petitions_*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            text = " ".join(json.loads(line).get("content", "").split())
            if text:
                docs.append(text)
    train = [d for i, d in enumerate(docs) if i % 50]
    val = [d for i, d in enumerate(docs) if i % 50 == 0]
    (out / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (out / "val.txt").write_text("\n".join(val) + "\n", encoding="utf-8")
    return out / "train.txt", out / "val.txt", sum(len(d) for d in docs)


def plot_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(h["step"], h["val_bpb"]) for h in history if "val_bpb" in h]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("validation bits per byte")
    ax.set_title(f"koforge tiny-10m on NSMC + petitions ({MINUTES:g} CPU min)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    import torch
    from rich.console import Console

    from koforge._utils.device import fast_cpu_precision
    from koforge.cli._common import rows_table
    from koforge.config import load_config
    from koforge.data.pack import pack_corpus
    from koforge.lm.checkpoint import load_model
    from koforge.lm.config import LMConfig
    from koforge.lm.engine import GenerationConfig, GenerationEngine
    from koforge.lm.hf import export_to_hf
    from koforge.lm.train import TrainConfig, train_lm
    from koforge.tokenizers.io import load_tokenizer
    from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

    torch.set_num_threads(THREADS)
    precision = PRECISION if PRECISION != "native" else fast_cpu_precision()
    console = Console()
    out = bench_out("lm_pretrain_demo")
    t0 = time.perf_counter()
    train_txt, val_txt, n_chars = write_corpus(out)
    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        texts = (line for line in open(train_txt, encoding="utf-8"))
        train_tokenizer(texts, TokenizerTrainConfig(kind="bpe", vocab_size=VOCAB), tok_dir, overwrite=True)
    shards = out / "shards"
    packed = pack_corpus({"train": [train_txt], "val": [val_txt]}, tok_dir, shards, overwrite=True)
    man = packed.manifest
    prep_s = time.perf_counter() - t0

    model_cfg = load_config(LMConfig, "tiny-10m", [f"vocab_size={max(VOCAB, man.vocab_size)}"], group="lm")
    # Time-boxed: the cosine decay follows the clock (max_minutes), validation every MINUTES / 10.
    # Batch 8 x 64 (NSMC reviews are ~15 tokens): on a shared 2-core CPU more, smaller updates learn more in a fixed time than fewer large ones.
    train_cfg = load_config(TrainConfig, "train-cpu", [
        f"data_dir={shards}", f"out_dir={out / 'run'}", "steps=1000000", "batch=8", "seq_len=64", "eval_every=0",
        f"eval_every_minutes={MINUTES / 10}", "ckpt_every=0", "warmup=30", f"max_minutes={MINUTES}",
        f"tokenizer={tok_dir}", "sample_tokens=24", f"precision={precision}", "overwrite=true"], group="lm")
    t1 = time.perf_counter()
    result = train_lm(model_cfg, train_cfg)
    train_s = time.perf_counter() - t1

    hf_dir = export_to_hf(result.checkpoint_dir, out / "hf", tokenizer=tok_dir, overwrite=True)
    plot_curve(result.history, out / "val_bpb.png")
    model, _, meta = load_model(result.checkpoint_dir)
    tok = load_tokenizer(tok_dir)
    engine = GenerationEngine(model, max_batch=1)
    gen_cfg = GenerationConfig(max_new_tokens=40, temperature=0.8, top_k=50, repetition_penalty=1.1, seed=0,
                               stop_tokens=[man.eos_id])
    generations = []
    for p in PROMPTS:
        ids = tok.encode(p, add_special_tokens=False)
        generations.append({"prompt": p, "completion": tok.decode(engine.generate([ids], gen_cfg)[0].tokens)})

    evals = [h for h in result.history if "val_bpb" in h]
    curve = [{"step": h["step"], "train_loss": round(h["train_loss"], 3), "val_loss": round(h["val_loss"], 3),
              "val_ppl": round(h["val_ppl"], 1), "val_bpb": round(h["val_bpb"], 3)} for h in evals]
    console.print(rows_table(curve, title="validation curve (tiny-10m, NSMC + petitions)"))
    tokens = result.final_step * train_cfg.batch * train_cfg.seq_len
    final = [{"metric": k, "value": v} for k, v in [
        ("parameters", f"{model.num_parameters():,}"), ("corpus chars", f"{n_chars:,}"),
        ("train / val tokens", f"{man.splits['train'].tokens:,} / {man.splits['val'].tokens:,}"),
        ("prep seconds (tokenizer + pack)", f"{prep_s:.0f}"), ("precision", precision),
        ("train minutes", f"{train_s / 60:.1f}"),
        ("steps", f"{result.final_step}"), ("tokens seen", f"{tokens:,}"),
        ("tokens / s", f"{tokens / train_s:.0f}"), ("final val loss", f"{evals[-1]['val_loss']:.3f}"),
        ("final val ppl", f"{evals[-1]['val_ppl']:.1f}"), ("final val bits/byte", f"{evals[-1]['val_bpb']:.3f}"),
        ("best checkpoint", str(result.checkpoint_dir.name)), ("HF export", str(hf_dir))]]
    console.print(rows_table(final, title="final"))
    console.print(rows_table(generations, title="ten generations (T=0.8, top-k 50, seed 0)"))
    (out / "generations.json").write_text(json.dumps(generations, ensure_ascii=False, indent=2), encoding="utf-8")
    console.print(f"curve: {out / 'val_bpb.png'}  run: {out / 'run'}  export: {hf_dir}")


if __name__ == "__main__":
    main()

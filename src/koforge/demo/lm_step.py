"""Demo step 3: pretrain a small Korean LM on the bundled reviews, print generations, measure perplexity.

The reviews are packed into token shards with the demo's Korean tokenizer,
a KoLM is pretrained for a few minutes (the step and time caps are in
DemoConfig), exported to a Hugging Face Llama folder, and its held-out
perplexity is measured on that export, which is what step 4 compresses.
"""
from __future__ import annotations

from koforge.demo.pipeline import DemoContext, StepResult, require_area
from koforge.eval.runner import result_from_raw
from koforge.eval.schema import write_result

PROMPTS = ["이 영화는 정말", "배우들의 연기가", "오늘 본 영화", "스토리가", "감독의 다음 작품"]


def pretrain_and_export(ctx: DemoContext):
    pack = require_area("koforge.data.pack")
    lm_config = require_area("koforge.lm.config")
    train = require_area("koforge.lm.train")
    from koforge._utils.device import fast_cpu_precision  # imports torch: only when the step runs
    hf = require_area("koforge.lm.hf")
    c = ctx.config
    folder = ctx.folder("lm")
    tokenizer = ctx.korean_tokenizer()
    packed = pack.pack_corpus({"train": [str(ctx.data_file("train.txt"))], "val": [str(ctx.data_file("heldout.txt"))]},
                              str(tokenizer), folder / "shards", overwrite=True)
    vocab = packed.manifest.vocab_size
    model_cfg = lm_config.LMConfig(vocab_size=vocab, d_model=c.lm_d_model, n_layers=c.lm_layers, n_heads=c.lm_heads,
                                   n_kv_heads=c.lm_kv_heads, d_ff=c.lm_d_ff, max_seq_len=max(256, c.lm_seq_len),
                                   tie_embeddings=True)
    train_cfg = train.TrainConfig(data_dir=str(folder / "shards"), out_dir=str(folder / "run"), steps=c.lm_steps,
                                  batch=c.lm_batch, seq_len=c.lm_seq_len, lr=c.lm_lr,
                                  warmup=max(1, c.lm_steps // 20), eval_every=max(1, c.lm_steps // 5),
                                  eval_batches=4, ckpt_every=c.lm_steps, keep_last=1, device="cpu",
                                  precision=fast_cpu_precision(),  # bf16 where native: more steps in the same minutes
                                  seed=c.seed, sample_tokens=0, max_minutes=c.lm_minutes, log_every=5,
                                  overwrite=True, experiment="koforge-demo-lm")
    result = train.train_lm(model_cfg, train_cfg)
    hf.export_to_hf(result.checkpoint_dir, folder / "hf", tokenizer=str(tokenizer), overwrite=True)
    return result, packed, model_cfg


def run(ctx: DemoContext) -> StepResult:
    perplexity = require_area("koforge.eval.perplexity")
    checkpoint = require_area("koforge.lm.checkpoint")
    result, packed, model_cfg = pretrain_and_export(ctx)
    folder = ctx.folder("lm")
    from koforge.lm.curve import plot_training_curve

    png = plot_training_curve(result.history, folder / "training_curve.png", title="LM pretraining on the bundled reviews")

    from koforge.lm.validation import sample_generations
    from koforge.tokenizers.io import load_tokenizer

    model, _, meta = checkpoint.load_model(result.checkpoint_dir)
    tokenizer = load_tokenizer(ctx.korean_tokenizer())
    generations = sample_generations(model, tokenizer, PROMPTS, ctx.config.generation_tokens, meta.get("eos_id"),
                                     seed=ctx.config.seed)
    lines = [f"{g['prompt']} → {g['completion']}" for g in generations]
    from koforge._utils.io import write_text

    write_text(folder / "generations.txt", "\n".join(lines) + "\n")

    from koforge.eval.runner import load_causal_lm

    hf_model, hf_tok = load_causal_lm(str(folder / "hf"), device="cpu")
    ppl = perplexity.evaluate_perplexity(hf_model, hf_tok, ctx.heldout_texts()[:300], context=128, stride=64)
    params = sum(p.numel() for p in model.parameters())
    last = next((h for h in reversed(result.history) if "val_loss" in h), {})
    metrics = {"perplexity": ppl["perplexity"], "bits_per_byte": ppl["bits_per_byte"], "parameters": params,
               "steps": result.final_step, "train_tokens": packed.manifest.splits["train"].tokens,
               "val_loss": last.get("val_loss")}
    write_result(result_from_raw("perplexity", str(folder / "hf"), {k: v for k, v in metrics.items() if v is not None},
                                 settings={"heldout": "last bundled reviews (300)", "context": 128, "stride": 64,
                                           "model_config": model_cfg.__dict__}, plots=[png.name]), folder)
    headline = (f"{params / 1e6:.1f}M params, {result.final_step} steps: held-out perplexity {ppl['perplexity']:.1f}, "
                f"{ppl['bits_per_byte']:.2f} bits/byte")
    return StepResult(name="lm", headline=headline, metrics={k: v for k, v in metrics.items() if v is not None},
                      lines=lines, artifacts=[png, folder / "generations.txt", result.out_dir / "history.json"])

"""Demo step 2b: teach the expanded all-MiniLM-L6-v2 Korean, and show KorSTS before and after.

Two stages (the lesson of NOTES.md: new rows need a stage of their own):
1. `new_rows_distill`: only the added rows learn, so that the expanded
   model's sentence embedding of a review matches the original model's
   embedding of the same review under its old (jamo) tokenization;
2. `sts_cosent`: the whole model is fine-tuned with CoSENT on the bundled
   KorSTS train slice.
KorSTS Spearman is measured on the bundled test split for the original model,
the expanded model before training, and after each stage.
"""
from __future__ import annotations

from koforge.demo.pipeline import DemoContext, StepResult, minilm_path, require_area
from koforge.eval.runner import result_from_raw, sample_path
from koforge.eval.schema import write_result


def _korsts_eval_file(ctx: DemoContext) -> str:
    n = ctx.config.korsts_eval_pairs
    full = sample_path("korsts_test.tsv")
    if not n:
        return str(full)
    path = ctx.out / "data" / f"korsts_test_{n}.tsv"
    if not path.exists():
        from koforge._utils.io import write_text

        lines = full.read_text(encoding="utf-8").splitlines()
        write_text(path, "\n".join(lines[: n + 1]) + "\n")
    return str(path)


def build_recipe(ctx: DemoContext, teacher: str, korsts_eval: str) -> dict:
    c = ctx.config
    sts = {"kind": "sts", "path": str(sample_path("korsts_train_sample.tsv"))}
    if c.sts_pairs:
        sts["samples"] = c.sts_pairs
    return {
        "name": "demo", "seed": c.seed, "device": "cpu", "teacher": teacher, "experiment": "koforge-demo-embed",
        "model": {"pooling": "mean", "normalize": True, "max_length": 64},
        "evaluation": {"korsts": korsts_eval, "korquad": None, "separation": "default",
                       "bitext_ko": None, "bitext_en": None, "batch_size": 64},
        "evaluate_base": True,
        "stages": [
            {"name": "new_rows_distill", "scope": "new_embeddings", "objective": "distill",
             "data": [{"kind": "text", "path": str(ctx.data_file("train.txt")), "samples": c.distill_texts,
                       "min_chars": 8}],
             "learning_rate": c.distill_lr, "max_steps": c.distill_steps, "epochs": 100.0, "batch_size": 64,
             "max_length": 64, "warmup_ratio": 0.0, "max_minutes": c.embed_minutes},
            {"name": "sts_cosent", "scope": "full", "objective": "cosent", "data": [sts],
             "learning_rate": 5e-5, "epochs": c.sts_epochs, "batch_size": 32, "max_length": 64,
             "max_minutes": c.embed_minutes},
        ],
    }


def run(ctx: DemoContext) -> StepResult:
    recipe_mod = require_area("koforge.embeddings.recipe")
    korsts_mod = require_area("koforge.eval.korsts")
    base = minilm_path()
    expanded = ctx.expanded_model()
    folder = ctx.folder("embed")
    korsts_eval = _korsts_eval_file(ctx)
    recipe = recipe_mod.load_recipe(build_recipe(ctx, str(base), korsts_eval))
    result = recipe_mod.run_recipe(recipe, expanded, folder / "run", overwrite=True)

    from sentence_transformers import SentenceTransformer

    original = korsts_mod.evaluate_korsts(SentenceTransformer(str(base), device="cpu"), korsts_eval)["spearman"]
    rows = [{"model": "all-MiniLM-L6-v2 (as shipped)", "korsts_spearman": original}]
    names = {"base": "expanded, before training"}
    for entry in result.stages:
        rows.append({"model": names.get(entry["stage"], f"after {entry['stage']}"),
                     "korsts_spearman": entry["metrics"].get("korsts/spearman"),
                     "separation": entry["metrics"].get("separation/separation")})
    metrics = {"spearman_original": original}
    for entry in result.stages:
        metrics[f"spearman_{entry['stage']}"] = entry["metrics"].get("korsts/spearman")
    final = result.stages[-1]["metrics"].get("korsts/spearman") if result.stages else None
    metrics["spearman"] = final
    write_result(result_from_raw("korsts", str(result.final_model), {**metrics, "stages": rows},
                                 settings={"korsts_file": korsts_eval, "recipe": "koforge.demo.embed_step"}), folder)
    headline = f"KorSTS Spearman {original:.3f} (MiniLM) -> {final:.3f} (expanded + 2 stages)" if final is not None \
        else "no stage evaluated"
    return StepResult(name="embed", headline=headline, metrics={k: v for k, v in metrics.items() if v is not None},
                      tables={"KorSTS before and after": rows},
                      artifacts=[p for p in (folder / "run" / "comparison.json", folder / "run" / "metrics.png")
                                 if p.exists()])

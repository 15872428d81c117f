"""Demo step 4: compress the demo LM and print the Score table.

Score = max(0.5 * PerfNorm + 0.5 * SpeedNorm, 0), PerfNorm = ppl_base / ppl,
SpeedNorm = 1 - t_model / t_base (time per generated token). The baseline and
every variant are measured on the same held-out reviews and prompts; the
table is written with the PerfNorm/SpeedNorm plot by `koforge.compress`.
Speed on a shared CPU drifts, so the baseline speed is re-measured once all
variants are built and every variant is scored against that figure.
"""
from __future__ import annotations

from koforge.demo.pipeline import DemoContext, StepResult, require_area
from koforge.eval.runner import result_from_raw
from koforge.eval.schema import write_result

PROMPTS = ["이 영화는 정말", "배우들의 연기가", "오늘 본 영화"]


def variants(n_layers: int) -> dict[str, dict]:
    """The compression recipes tried on the demo LM."""
    out = {"int8": {"methods": ["quantize_int8"]}}
    if n_layers >= 2:
        out[f"drop_to_{n_layers - 1}_layers"] = {"methods": ["drop_layers"], "keep_layers": n_layers - 1,
                                                 "drop_strategy": "importance", "calibration_docs": 32}
        out[f"drop_to_{n_layers - 1}_layers_heal"] = {"methods": ["drop_layers", "heal"], "keep_layers": n_layers - 1,
                                                      "drop_strategy": "importance", "calibration_docs": 32,
                                                      "heal_steps": 30}
    return out


def run(ctx: DemoContext) -> StepResult:
    config = require_area("koforge.compress.config")
    apply = require_area("koforge.compress.apply")
    score = require_area("koforge.compress.score")
    report = require_area("koforge.compress.report")
    model_dir = ctx.lm_export()
    folder = ctx.folder("compress")
    c = ctx.config
    measure = config.MeasureConfig(texts=str(ctx.data_file("heldout.txt")), max_docs=c.compress_docs, max_chars=20000,
                                   context=128, stride=64, prompts=PROMPTS, new_tokens=16, warmup=1,
                                   repeats=c.speed_repeats)
    baseline = score.run_baseline(model_dir, measure, output=folder / "baseline_result.json", overwrite=True)
    import json

    n_layers = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
    runs = folder / "runs"
    built = []
    for name, recipe in variants(n_layers).items():
        cfg = config.CompressionConfig(**{**recipe, "calibration_texts": str(ctx.data_file("train.txt"))})
        apply.apply_compression(model_dir, cfg, runs / name, measure=measure, overwrite=True)
        built.append(name)
    from koforge.compress.layout import load_model
    from koforge.eval.speed import measure_speed

    base_model, base_tok = load_model(model_dir)
    base_speed = measure_speed(base_model, base_tok, measure.prompts, new_tokens=measure.new_tokens,
                               warmup=measure.warmup, repeats=measure.repeats)
    for name in built:
        score.evaluate_compressed(runs / name, baseline, output=runs / name / "eval_result.json", base_speed=base_speed,
                                  overwrite=True)
    table = report.compression_report(runs, output=folder)
    rows = table["rows"]
    best = rows[0]
    metrics = {"best_score": best["Score"], "best_perf_norm": best["PerfNorm"], "best_speed_norm": best["SpeedNorm"],
               "base_perplexity": baseline["perplexity"]["perplexity"],
               "base_time_per_token_ms": base_speed["time_per_token_ms"]}
    write_result(result_from_raw("compress", str(model_dir), {**metrics, "runs": rows}, primary="best_score",
                                 settings={"measure": measure.__dict__}, plots=["compression_scores.png"]), folder)
    headline = f"best: {best['run']} Score {best['Score']:.3f} (PerfNorm {best['PerfNorm']:.3f}, SpeedNorm {best['SpeedNorm']:.3f})"
    return StepResult(name="compress", headline=headline, metrics=metrics,
                      tables={"Compression Score (best first)": [
                          {k: r[k] for k in ("run", "methods", "layers", "dtype", "ppl", "ms/token", "PerfNorm",
                                             "SpeedNorm", "Score")} for r in rows]},
                      artifacts=[folder / "compression_report.json", folder / "compression_scores.png"])

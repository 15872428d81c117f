"""Baseline, evaluation against it, and the Score of the EXAONE light-weighting task.

    PerfNorm  = ppl_base / ppl_model
    SpeedNorm = 1 - time_per_token_model / time_per_token_base
    Score     = max(0.5 * PerfNorm + 0.5 * SpeedNorm, 0)
so the base model itself scores 0.5. A baseline file records the model's
fingerprint (shape config, tokenizer vocabulary hash, embedding checksum), the
measurement settings and the hash of the exact held-out documents; an
evaluation refuses a baseline that was measured on another model, another
tokenizer or other text, since the ratios would then mean nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from koforge._utils.errors import ConfigError, DataError
from koforge._utils.io import check_file_output, read_json, write_json
from koforge._utils.logging import get_logger
from koforge.compress.analyze import analyze_model
from koforge.compress.calibration import load_texts, texts_sha
from koforge.compress.config import MeasureConfig
from koforge.compress.layout import PROVENANCE_FILE, load_model, model_fingerprint, read_provenance
from koforge.compress.quantize import apply_int8_runtime
from koforge.config import config_to_dict, load_config
from koforge.eval.perplexity import evaluate_perplexity
from koforge.eval.speed import measure_speed

log = get_logger(__name__)

BASELINE_KIND = "koforge.compress.baseline"
EVAL_KIND = "koforge.compress.eval"
MLFLOW_PARAMS = ("number_of_layers", "number_of_heads", "hidden_dim", "total_parameters", "model_size_mb")
MLFLOW_METRICS = ("tokens_per_sec", "time_per_token_ms", "perplexity", "perf_norm", "speed_norm", "score")


def compute_score(ppl_base: float, ppl_model: float, tpt_base: float, tpt_model: float) -> dict:
    """PerfNorm, SpeedNorm and Score from perplexities and times per token."""
    if min(ppl_base, ppl_model, tpt_base, tpt_model) <= 0:
        raise DataError(f"perplexities and times must be > 0 (got {ppl_base}, {ppl_model}, {tpt_base}, {tpt_model}).")
    perf = ppl_base / ppl_model
    speed = 1.0 - tpt_model / tpt_base
    return {"perf_norm": perf, "speed_norm": speed, "score": max(0.5 * perf + 0.5 * speed, 0.0)}


def held_out_texts(measure: MeasureConfig) -> list[str]:
    """The held-out documents a MeasureConfig designates."""
    if not measure.texts:
        raise ConfigError("measure.texts is not set: give a held-out Korean text file (.txt one document per line, "
                          ".jsonl with measure.text_field, or KorQuAD .json), e.g. measure.texts=heldout.txt.")
    return load_texts(measure.texts, text_field=measure.text_field, max_docs=measure.max_docs, max_chars=measure.max_chars)


def check_fits_positions(model: Any, tokenizer: Any, measure: MeasureConfig) -> None:
    """Refuse windows or generations past the model's position limit: it would still run, on positions it never
    learned, and record a perplexity or speed that every later score is measured against."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    if measure.context > limit:
        raise ConfigError(f"measure.context={measure.context} is longer than the model attends to "
                          f"(max_position_embeddings={limit}). Set context (measure.context) to {limit} or less.")
    longest = max(len(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in measure.prompts)
    if longest + measure.new_tokens > limit:
        raise ConfigError(f"the speed test would reach position {longest + measure.new_tokens} (prompt of {longest} "
                          f"tokens + new_tokens={measure.new_tokens}), past max_position_embeddings={limit}. Lower "
                          "new_tokens (measure.new_tokens) or shorten measure.prompts.")


def measure_model(model: Any, tokenizer: Any, measure: MeasureConfig, texts: Optional[list[str]] = None) -> dict:
    """Perplexity and speed of a loaded model under `measure`."""
    check_fits_positions(model, tokenizer, measure)
    texts = texts if texts is not None else held_out_texts(measure)
    ppl = evaluate_perplexity(model, tokenizer, texts, context=measure.context, stride=measure.stride,
                              batch_size=measure.batch_size)
    speed = measure_speed(model, tokenizer, measure.prompts, new_tokens=measure.new_tokens, warmup=measure.warmup,
                          repeats=measure.repeats, threads=measure.threads)
    return {"texts_sha": texts_sha(texts), "documents": len(texts), "perplexity": ppl, "speed": speed}


def flat_metrics(result: dict) -> dict:
    """The headline metrics of a baseline or eval result, flat."""
    out = {"perplexity": result["perplexity"]["perplexity"], "bits_per_byte": result["perplexity"]["bits_per_byte"],
           "time_per_token_ms": result["speed"]["time_per_token_ms"], "tokens_per_sec": result["speed"]["tokens_per_sec"],
           "time_to_first_token_ms": result["speed"]["time_to_first_token_ms"]}
    out.update({k: result[k] for k in ("perf_norm", "speed_norm", "score") if k in result})
    return out


def _load_for_measure(model_path: str | Path, trust_remote_code: bool) -> tuple[Any, Any, dict]:
    """Model (int8 runtime applied when marked), tokenizer, and the analysis of its stored weights."""
    model, tokenizer = load_model(model_path, trust_remote_code=trust_remote_code, apply_runtime=False)
    local = Path(model_path).expanduser()
    analysis = analyze_model(model, local if local.exists() else None)
    if getattr(model.config, "koforge_quantization", None):
        model = apply_int8_runtime(model)
    return model, tokenizer, analysis


def run_baseline(model_path: str | Path, measure: MeasureConfig, *, output: str | Path | None = None,
                 trust_remote_code: bool = False, overwrite: bool = False) -> dict:
    """Measure the base model and write `baseline_result.json` (default: in the model folder, else ./).

    An existing file is replaced only with `overwrite` (evaluations made against it depend on it)."""
    out = check_file_output(_result_path(model_path, output, "baseline_result.json"), overwrite)
    texts = held_out_texts(measure)
    model, tokenizer, analysis = _load_for_measure(model_path, trust_remote_code)
    result = {"kind": BASELINE_KIND, "model": str(model_path), "fingerprint": model_fingerprint(model, tokenizer),
              "analysis": analysis, "measure": config_to_dict(measure)}
    result.update(measure_model(model, tokenizer, measure, texts))
    result["perf_norm"], result["speed_norm"], result["score"] = 1.0, 0.0, 0.5
    write_json(out, result)
    result["path"] = str(out)
    return result


def _result_path(model_path: str | Path, output: str | Path | None, name: str) -> Path:
    """Where a result file goes: `output` (a file, or a folder that gets `name`), else the model folder
    (the current folder for a hub name)."""
    local = Path(model_path).expanduser()
    out = Path(output).expanduser() if output else (local if local.is_dir() else Path("."))
    return out / name if out.is_dir() else out


def read_baseline(path: str | Path) -> dict:
    """A baseline_result.json (or the folder holding one, e.g. the base model's), checked for its kind."""
    if Path(path).expanduser().is_dir() and (Path(path).expanduser() / "baseline_result.json").is_file():
        path = Path(path).expanduser() / "baseline_result.json"
    data = read_json(path, "baseline file")
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
        raise DataError(f"'{path}' is not a koforge baseline file (kind {data.get('kind') if isinstance(data, dict) else None!r}). "
                        "Create one with `koforge compress baseline MODEL`.")
    return {**data, "path": str(path)}


def check_same_base(baseline: dict, model_fp: dict, provenance: Optional[dict], model_path: str) -> str:
    """Refuse a baseline measured on another model (or another tokenizer); returns how sure the check is:
    `provenance` (the folder names its base), `embeddings` (same input embeddings as the base) or
    `tokenizer only` (a folder without provenance whose embeddings changed: a warning is logged)."""
    base_fp = baseline["fingerprint"]
    if provenance is not None:
        origin = provenance.get("base_fingerprint", {})
        if origin != base_fp:
            raise DataError(
                f"baseline '{baseline.get('path', baseline['model'])}' was measured on another model: '{model_path}' was "
                f"compressed from '{provenance.get('base_model')}' (fingerprint {origin.get('config_sha')}/"
                f"{origin.get('embed_checksum')}), the baseline is of '{baseline['model']}' ({base_fp.get('config_sha')}/"
                f"{base_fp.get('embed_checksum')}). Run `koforge compress baseline` on the base model of this one.")
    if model_fp["tokenizer_sha"] != base_fp["tokenizer_sha"]:
        raise DataError(f"baseline '{baseline['model']}' uses another tokenizer than '{model_path}' (vocabulary hash "
                        f"{base_fp['tokenizer_sha']} vs {model_fp['tokenizer_sha']}): perplexities are not comparable. "
                        "Measure a baseline of this model's own base.")
    if provenance is not None:
        return "provenance"
    if model_fp["embed_checksum"] == base_fp["embed_checksum"]:
        return "embeddings"
    log.warning("'%s' has no %s and other input embeddings than the baseline's model '%s': only the tokenizer "
                "could be checked. Make sure the baseline is of this model's own base.", model_path, PROVENANCE_FILE,
                baseline["model"])
    return "tokenizer only"


def evaluate_compressed(model_path: str | Path, baseline: str | Path | dict, *, output: str | Path | None = None,
                        trust_remote_code: bool = False, base_speed: Optional[dict] = None,
                        overwrite: bool = False) -> dict:
    """Measure a (compressed) model like its baseline; add PerfNorm, SpeedNorm, Score; write eval_result.json
    (default: in the model folder; a folder given as `output` gets it inside). An existing result is replaced
    only with `overwrite`: reports and MLflow runs were made from it.

    `base_speed` replaces the baseline's speed figures (e.g. re-measured in the same session,
    since a shared CPU drifts).
    """
    local = Path(model_path).expanduser()
    out = check_file_output(_result_path(model_path, output, "eval_result.json"), overwrite)  # before measuring
    base = dict(baseline) if isinstance(baseline, dict) else read_baseline(baseline)
    measure = load_config(MeasureConfig, base["measure"])
    texts = held_out_texts(measure)
    if texts_sha(texts) != base["texts_sha"]:
        raise DataError(f"the held-out text '{measure.texts}' changed since the baseline was measured (hash "
                        f"{texts_sha(texts)} vs {base['texts_sha']}). Re-run the baseline.")
    model, tokenizer, analysis = _load_for_measure(model_path, trust_remote_code)
    provenance = read_provenance(local) if local.is_dir() else None
    fingerprint = model_fingerprint(model, tokenizer)
    base_check = check_same_base(base, fingerprint, provenance, str(model_path))
    result = {"kind": EVAL_KIND, "model": str(model_path), "fingerprint": fingerprint,
              "baseline": base.get("path", base["model"]), "base_model": base["model"], "base_check": base_check,
              "analysis": analysis,
              "measure": base["measure"], "recipe": (provenance or {}).get("config")}
    result.update(measure_model(model, tokenizer, measure, texts))
    base_speed = base_speed or base["speed"]
    result["base"] = {"perplexity": base["perplexity"]["perplexity"], "time_per_token_ms": base_speed["time_per_token_ms"]}
    result.update(compute_score(base["perplexity"]["perplexity"], result["perplexity"]["perplexity"],
                                base_speed["time_per_token_ms"], result["speed"]["time_per_token_ms"]))
    write_json(out, result)
    result["path"] = str(out)
    return result


def log_to_mlflow(result: dict, *, experiment: str = "koforge-compress", run_name: Optional[str] = None,
                  extra_params: Optional[dict] = None) -> Optional[str]:
    """Log a baseline/eval result with the task's params and metrics; returns the run id (None when off)."""
    from koforge.tracking.mlflow_run import tracked_run

    analysis = result["analysis"]
    params = {k: analysis[k] for k in MLFLOW_PARAMS}
    params.update(extra_params or {})
    metrics = {"tokens_per_sec": result["speed"]["tokens_per_sec"], "time_per_token_ms": result["speed"]["time_per_token_ms"],
               "perplexity": result["perplexity"]["perplexity"], "perf_norm": result.get("perf_norm", 1.0),
               "speed_norm": result.get("speed_norm", 0.0), "score": result.get("score", 0.5),
               "bits_per_byte": result["perplexity"]["bits_per_byte"],
               "time_to_first_token_ms": result["speed"]["time_to_first_token_ms"]}
    with tracked_run(experiment, run_name=run_name, params=params, tags={"model": result["model"]} if result.get("model") else None) as run:
        run.log_metrics(metrics)
        if result.get("path"):
            run.log_artifact(result["path"])
        return run.run_id

"""`koforge compress`: analyze, baseline, apply, run (Hydra experiments), eval, report, package."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import cli_errors, console, overrides_arg, rows_table, text_override

app = typer.Typer(help="Compression lab for Hugging Face causal LMs (Llama, Mistral, Qwen3, Exaone4, koforge LMs).\n\n"
                       "Example: koforge compress run 11-23_drop_layers -m compression.keep_layers=22,24 "
                       "model=./my-model measure.texts=heldout.txt", no_args_is_help=True)

MeasureOpt = typer.Option(None, "--measure", help="MeasureConfig YAML or preset (configs/compress/measure).")
RemoteCodeOpt = typer.Option(False, help="Allow the model's own code (only if you trust it).")


def _measure(preset: Optional[str], texts: Optional[str], overrides: Optional[List[str]]):
    from koforge.compress.config import MeasureConfig
    from koforge.config import load_config

    extra = [text_override("texts", texts)] if texts else []
    return load_config(MeasureConfig, preset, list(overrides or []) + extra, group="compress")


def _metrics(result: dict) -> None:
    from koforge.compress.score import flat_metrics

    console.print(rows_table([{"metric": k, "value": v} for k, v in flat_metrics(result).items()], floatfmt=".4f"))


@app.command()
@cli_errors
def analyze(model: str = typer.Argument(..., help="Model folder or hub name."),
            trust_remote_code: bool = RemoteCodeOpt) -> None:
    """Layers, heads, KV heads, widths, parameters per module type, size, dtype.

    Example: koforge compress analyze ./exaone-1.2b
    """
    from koforge.compress import analyze_model, load_model

    m, _ = load_model(model, trust_remote_code=trust_remote_code, apply_runtime=False)
    info = analyze_model(m, model if Path(model).exists() else None)
    rows = [{"field": k, "value": v} for k, v in info.items() if k not in ("parameters_by_type", "dtypes", "layer_types")]
    rows += [{"field": f"parameters: {k}", "value": v} for k, v in info["parameters_by_type"].items()]
    console.print(rows_table(rows, title=f"{model}"))


@app.command()
@cli_errors
def baseline(model: str = typer.Argument(..., help="Base model folder or hub name."),
             texts: Optional[str] = typer.Option(None, help="Held-out Korean text (.txt / .jsonl / KorQuAD .json)."),
             out: Optional[Path] = typer.Option(None, help="File (or folder) to write baseline_result.json to "
                                                            "(default: the model folder)."),
             overwrite: bool = typer.Option(False, help="Replace an existing baseline file (evaluations against it "
                                                         "no longer match it)."),
             mlflow: bool = typer.Option(True, help="Log the result to MLflow (beside the compressed models' runs)."),
             trust_remote_code: bool = RemoteCodeOpt, measure: Optional[str] = MeasureOpt,
             overrides: Optional[List[str]] = overrides_arg("context=512")) -> None:
    """Perplexity and generation speed of the base model -> baseline_result.json.

    Example: koforge compress baseline ./exaone-1.2b --texts heldout.txt context=512 stride=256
    """
    from koforge.compress import run_baseline
    from koforge.compress.score import log_to_mlflow

    result = run_baseline(model, _measure(measure, texts, overrides), output=out, overwrite=overwrite,
                          trust_remote_code=trust_remote_code)
    if mlflow:
        log_to_mlflow(result, run_name=f"baseline:{Path(model).name or model}")
    _metrics(result)
    console.print(f"wrote [bold]{result['path']}[/]")


@app.command()
@cli_errors
def apply(model: str = typer.Argument(..., help="Base model folder or hub name."),
          out: Path = typer.Option(..., help="Output folder of the compressed model."),
          preset: Optional[str] = typer.Option(None, help="CompressionConfig YAML or preset (fp16, bf16, int8, drop_half_heal)."),
          texts: Optional[str] = typer.Option(None, help="Held-out text; calibration reads the documents after it."),
          baseline_file: Optional[Path] = typer.Option(
              None, "--baseline", help="baseline_result.json of the base: its held-out text and settings (instead of "
                                       "--texts), so calibration never reads a document its perplexity uses."),
          overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
          trust_remote_code: bool = RemoteCodeOpt,
          overrides: Optional[List[str]] = overrides_arg("keep_layers=6")) -> None:
    """Apply a compression recipe and save a plain Hugging Face folder.

    Example: koforge compress apply ./base --out ./small --baseline ./base/baseline_result.json "methods=\\[drop_layers,heal]" keep_layers=6
    """
    from koforge._utils.errors import ConfigError
    from koforge.compress import CompressionConfig, apply_compression
    from koforge.compress.config import MeasureConfig
    from koforge.compress.score import read_baseline
    from koforge.config import load_config

    if preset == "measure":
        raise ConfigError("'measure' is a preset of measurement settings, not a recipe; use fp16, bf16, int8 or "
                          "drop_half_heal (or a YAML file).")
    if texts and baseline_file:
        raise ConfigError("give --texts or --baseline, not both (the baseline names its own held-out text).")
    cfg = load_config(CompressionConfig, preset, list(overrides or []), group="compress")
    if baseline_file:
        measure = load_config(MeasureConfig, read_baseline(baseline_file)["measure"])
    else:
        measure = _measure(None, texts, None) if texts else None
    result = apply_compression(model, cfg, out, measure=measure, overwrite=overwrite,
                               trust_remote_code=trust_remote_code)
    keys = ("number_of_layers", "number_of_heads", "hidden_dim", "intermediate_size", "total_parameters", "dtype")
    console.print(rows_table([{"": k, "before": result["before"][k], "after": result["after"][k]} for k in keys]))
    console.print(f"wrote [bold]{out}[/] (reload check: max logit difference {result['reload_max_diff']:.2g})")


@app.command()
@cli_errors
def run(experiment: str = typer.Argument(..., help="Experiment name (configs/experiments) or YAML path."),
        overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides, e.g. compression.keep_layers=22."),
        multirun: bool = typer.Option(False, "-m", "--multirun", help="Sweep comma-separated override values."),
        output_root: Optional[str] = typer.Option(None, help="Folder of runs (default: outputs/).")) -> None:
    """Run a Hydra experiment (or a sweep with -m); each run lands in outputs/{date}_{name}/.

    Example: koforge compress run 11-23_drop_layers -m compression.keep_layers=22,24,26,28 measure.texts=heldout.txt
    """
    from koforge.compress.experiment import run as run_experiments, summary_row

    result = run_experiments(experiment, list(overrides or []), multirun=multirun, output_root=output_root)
    rows = sorted((summary_row(r) for r in result["runs"]), key=lambda r: -r["Score"])
    if rows:
        console.print(rows_table(rows, title="runs, best first", floatfmt=".4f"))
    for f in result["failed"]:
        console.print(f"[red]failed[/] {' '.join(f['overrides'])}: {f['error']}")
    console.print(f"runs in [bold]{result['root']}[/]; report [bold]{result['report']}[/]")
    if result["failed"]:
        raise typer.Exit(1)


@app.command("eval")
@cli_errors
def eval_(model: str = typer.Argument(..., help="Compressed model folder."),
          baseline_file: Path = typer.Option(..., "--baseline", help="baseline_result.json of its base model."),
          out: Optional[Path] = typer.Option(None, help="File (or folder) to write eval_result.json to "
                                                       "(default: the model folder)."),
          overwrite: bool = typer.Option(False, help="Replace an existing eval_result.json (reports read it)."),
          mlflow: bool = typer.Option(True, help="Log the result to MLflow."),
          trust_remote_code: bool = RemoteCodeOpt) -> None:
    """Measure like the baseline; PerfNorm, SpeedNorm and Score -> MODEL/eval_result.json.

    Example: koforge compress eval ./small --baseline ./base/baseline_result.json
    """
    from koforge.compress import evaluate_compressed
    from koforge.compress.score import log_to_mlflow

    result = evaluate_compressed(model, baseline_file, output=out, overwrite=overwrite,
                                 trust_remote_code=trust_remote_code)
    if mlflow:
        log_to_mlflow(result, run_name=Path(model).name)
    _metrics(result)
    console.print(f"wrote [bold]{result['path']}[/]")


@app.command()
@cli_errors
def report(root: Path = typer.Argument(Path("outputs"), help="Folder holding the runs."),
           out: Optional[Path] = typer.Option(None, help="Where to write the report (default: ROOT).")) -> None:
    """All runs in one table, best first, and a PerfNorm vs SpeedNorm plot with Score contours.

    Example: koforge compress report outputs/
    """
    from koforge.compress import compression_report

    result = compression_report(root, out)
    console.print(rows_table(result["rows"], title="compression runs, best first", floatfmt=".4f"))
    console.print(f"wrote [bold]{result['markdown']}[/] and [bold]{result['png']}[/]")


@app.command()
@cli_errors
def package(model: Path = typer.Argument(..., help="Model folder to submit."),
            out: Path = typer.Option(Path("submit.zip"), help="Zip to write."),
            transformers_version: str = typer.Option("4.54.0", help="transformers_version written into config.json."),
            overwrite: bool = typer.Option(False, help="Replace an existing zip.")) -> None:
    """submit.zip with model/ (config.json, model.safetensors, tokenizer files), checked to load.

    Example: koforge compress package outputs/2026-11-23_fp16/model --out submit.zip
    """
    from koforge.compress import package_submission

    result = package_submission(model, out, transformers_version=transformers_version, overwrite=overwrite)
    console.print(rows_table([{"file": f} for f in result["files"]], title=f"{out} ({result['size_mb']:.1f} MB)"))

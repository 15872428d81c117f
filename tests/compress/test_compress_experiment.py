"""Hydra experiments end to end on a tiny model: runs, sweeps, MLflow, report, package."""
from __future__ import annotations

import datetime as dt
import json
import os
import stat
import zipfile

import pytest
from typer.testing import CliRunner

from koforge._utils.errors import ConfigError
from koforge.compress.experiment import compose_experiment, expand_sweep, run
from tokenizer_folders import assert_portable, assert_same_tokenizer


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

DAY = dt.date(2026, 11, 23)


def fast(model, heldout, root) -> list[str]:
    return [f"model={model}", f"measure.texts={heldout}", "measure.max_docs=3", "measure.context=32",
            "measure.stride=16", "measure.new_tokens=3", "measure.repeats=1", "measure.warmup=0",
            "measure.prompts=['가나다']", "compression.calibration_docs=8", "compression.calibration_context=16",
            f"output_root={root}"]


def test_compose_applies_overrides_and_rejects_typos():
    cfg = compose_experiment("11-23_drop_layers", ["compression.keep_layers=22", "measure.texts=x.txt"])
    assert (cfg.name, cfg.compression.keep_layers, cfg.compression.methods) == ("drop_layers", 22, ["drop_layers", "heal"])
    cfg = compose_experiment("11-23_fp16", ["measure.texts=x.txt", "compression.calibration_docs=8"])  # not in the YAML
    assert cfg.compression.calibration_docs == 8
    with pytest.raises(ConfigError, match="hidden_size is set but method reduce_width is not in"):
        compose_experiment("11-23_fp16", ["measure.texts=x.txt", "compression.hidden_size=48"])  # would do nothing
    with pytest.raises(ConfigError, match="Key 'keep_layer' not in 'CompressionConfig'. Valid keys of compression: "
                                          "methods, keep_layers"):
        compose_experiment("11-23_drop_layers", ["compression.keep_layer=22"])
    with pytest.raises(ConfigError, match="no experiment named 'nope'.*11-23_drop_layers"):
        compose_experiment("nope")
    assert expand_sweep(["a.b=1,2", "c=x", "d=3,4"]) == [["a.b=1", "c=x", "d=3"], ["a.b=1", "c=x", "d=4"],
                                                          ["a.b=2", "c=x", "d=3"], ["a.b=2", "c=x", "d=4"]]


def test_sweep_job_names_keep_the_whole_value():
    """Only the key is shortened: a value with a dot (a float, a path) used to be cut to its last part, so
    heal_temperature=1.5 and =2.5 were both named '5' and the second job found the first one's folder."""
    from koforge.compress.experiment import job_name

    jobs = expand_sweep(["compression.heal_temperature=1.5,2.5", "measure.texts=/data/held.out.txt"])
    fixed = ["measure.texts=/data/held.out.txt"]
    assert [job_name(j, fixed) for j in jobs] == ["heal_temperature=1.5", "heal_temperature=2.5"]
    assert job_name(["compression.keep_fraction=0.5", "measure.texts=/d/h.txt"], []) == \
        "keep_fraction=0.5,texts=_d_h.txt"


def test_single_run_is_tracked_in_mlflow_and_packaged(tiny_models, heldout, tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    overrides = fast(tiny_models["llama"], heldout, tmp_path / "not_used") + [
        "compression.methods=[drop_layers,convert_dtype]", "compression.drop_strategy=top",
        "compression.keep_layers=2", "compression.dtype=bf16"]
    result = run("11-23_fp16", overrides, today=DAY, output_root=str(tmp_path / "outputs"))  # --output-root wins
    root = tmp_path / "outputs" / "2026-11-23_fp16"
    assert result["root"] == str(root) and not (tmp_path / "not_used").exists()
    assert json.loads((root / "config.json").read_text())["output_root"] == str(tmp_path / "outputs")
    for name in ("config.json", "overrides.txt", "baseline_result.json", "eval_result.json", "2026-11-23_report.md",
                 "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert (root / name).exists(), name
    saved = json.loads((root / "eval_result.json").read_text())
    assert saved["analysis"]["number_of_layers"] == 2 and saved["analysis"]["dtype"] == "bfloat16"
    assert saved["score"] == pytest.approx(max(0.5 * saved["perf_norm"] + 0.5 * saved["speed_norm"], 0))
    report = (root / "2026-11-23_report.md").read_text()
    assert "Metrics vs baseline" in report and "What failed" in report and "compression.keep_layers=2" in report

    run_data = MlflowClient(tracking_uri=mlflow_store).get_run(saved["mlflow_run_id"]).data
    assert run_data.params["number_of_layers"] == "2" and run_data.params["number_of_heads"] == "8"
    assert run_data.params["hidden_dim"] == "64" and int(run_data.params["total_parameters"]) > 0
    assert float(run_data.params["model_size_mb"]) > 0
    for key in ("tokens_per_sec", "time_per_token_ms", "perplexity", "perf_norm", "speed_norm", "score"):
        assert key in run_data.metrics, key
    assert run_data.metrics["score"] == pytest.approx(saved["score"])

    from koforge.compress import package_submission
    from transformers import AutoModelForCausalLM

    info = package_submission(root / "model", tmp_path / "submit.zip", transformers_version="4.54.0")
    with zipfile.ZipFile(tmp_path / "submit.zip") as zf:
        names = set(zf.namelist())
        config = json.loads(zf.read("model/config.json"))
        modes = {i.filename: i.external_attr >> 16 & 0o777 for i in zf.infolist()}
        zf.extractall(tmp_path / "unzipped")
    # Weights readable by whoever unpacks and grades it (safetensors 0.8 writes 0600), as the umask allows.
    assert modes["model/model.safetensors"] & 0o444 == 0o444 & ~current_umask()
    assert stat.S_IMODE((root / "model" / "model.safetensors").stat().st_mode) == 0o666 & ~current_umask()
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= names
    assert not any("eval_result" in n or "koforge_compression" in n for n in names)
    assert config["transformers_version"] == "4.54.0" and config["torch_dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "unzipped" / "model")).config.num_hidden_layers == 2
    assert info["model_type"] == "llama"
    assert_portable(tmp_path / "unzipped" / "model")  # the package targets transformers 4.54
    assert_same_tokenizer(tiny_models["llama"], tmp_path / "unzipped" / "model")


def test_a_run_without_its_model_names_no_model_folder(tiny_models, heldout, tmp_path, mlflow_store):
    """save_model=false deletes model/: neither eval_result.json nor the MLflow run may point at it."""
    from mlflow.tracking import MlflowClient

    run("11-23_fp16", fast(tiny_models["llama"], heldout, tmp_path / "outputs") + ["save_model=false"], today=DAY)
    root = tmp_path / "outputs" / "2026-11-23_fp16"
    saved = json.loads((root / "eval_result.json").read_text())
    assert not (root / "model").exists() and saved["model"] is None
    assert "model" not in MlflowClient(tracking_uri=mlflow_store).get_run(saved["mlflow_run_id"]).data.tags


def test_cli_baseline_is_logged_to_mlflow_beside_the_compressed_runs(tiny_models, heldout, tmp_path, mlflow_store):
    import mlflow

    from koforge.cli.main import app

    out = tmp_path / "baseline_result.json"
    result = CliRunner().invoke(app, ["compress", "baseline", str(tiny_models["llama"]), "--texts", str(heldout), "--out",
                                      str(out), "max_docs=3", "context=32", "stride=16", "new_tokens=3", "repeats=1",
                                      "warmup=0"])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    [run] = mlflow.search_runs(experiment_names=["koforge-compress"], filter_string="attributes.run_name = 'baseline:llama'",
                               output_format="list")
    assert run.data.metrics["perplexity"] == pytest.approx(saved["perplexity"]["perplexity"])
    assert run.data.metrics["score"] == 0.5 and run.data.tags["model"] == saved["model"]


def test_baseline_out_may_be_a_folder_and_an_existing_file_is_refused_before_measuring(tiny_models, heldout, tmp_path,
                                                                                      monkeypatch):
    from koforge._utils.errors import OutputExistsError
    from koforge.compress import score
    from koforge.compress.config import MeasureConfig

    measure = MeasureConfig(texts=str(heldout), max_docs=2, context=32, stride=16, new_tokens=2, repeats=1, warmup=0)
    folder = tmp_path / "results"
    folder.mkdir()
    result = score.run_baseline(tiny_models["llama"], measure, output=folder)
    assert result["path"] == str(folder / "baseline_result.json") and (folder / "baseline_result.json").exists()
    monkeypatch.setattr(score, "held_out_texts", lambda *a: pytest.fail("measured before the output was checked"))
    for out in (folder, folder / "baseline_result.json"):
        with pytest.raises(OutputExistsError, match="--overwrite"):
            score.run_baseline(tiny_models["llama"], measure, output=out)


def test_cli_eval_keeps_an_earlier_result_unless_told(tiny_models, heldout, tmp_path):
    """compress eval writes MODEL/eval_result.json once; a second run is refused before it measures."""
    import shutil

    from koforge.cli.main import app
    from koforge.compress import score

    model = tmp_path / "small"
    shutil.copytree(tiny_models["llama"], model)
    baseline = tmp_path / "baseline_result.json"
    fast_measure = ["max_docs=2", "context=32", "stride=16", "new_tokens=2", "repeats=1", "warmup=0"]
    assert CliRunner().invoke(app, ["compress", "baseline", str(tiny_models["llama"]), "--texts", str(heldout), "--out",
                                    str(baseline), "--no-mlflow", *fast_measure]).exit_code == 0
    args = ["compress", "eval", str(model), "--baseline", str(baseline), "--no-mlflow"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    written = (model / "eval_result.json").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output and "--overwrite" in again.output
    assert (model / "eval_result.json").read_bytes() == written
    by_folder = score.evaluate_compressed(model, tmp_path, output=tmp_path / "by_folder.json")  # the folder holding it
    assert by_folder["baseline"] == str(baseline)
    elsewhere = CliRunner().invoke(app, args + ["--out", str(tmp_path)])
    assert elsewhere.exit_code == 0 and json.loads((tmp_path / "eval_result.json").read_text())["model"] == str(model)
    assert CliRunner().invoke(app, args + ["--overwrite"]).exit_code == 0


def test_multirun_sweep_via_cli_then_report(tiny_models, heldout, tmp_path, monkeypatch):
    from koforge.cli.main import app
    from koforge.compress import experiment

    def args(values: str) -> list[str]:
        return ["compress", "run", "11-23_drop_layers", "-m", f"compression.keep_layers={values}",
                "compression.heal_steps=2", "compression.heal_batch_size=2"] + fast(tiny_models["exaone4"], heldout, tmp_path / "o")

    # A job that cannot fit the model is refused before any baseline is measured, and nothing is left behind.
    result = CliRunner().invoke(app, args("1,3,9"))
    assert result.exit_code == 1 and "keep_layers=9 out of range" in result.output
    assert not (tmp_path / "o").exists()

    # A job that fails while running (here as torch does when out of memory) is listed in the sweep and its
    # report, the other jobs still run, and the command exits 1.
    apply = experiment.apply_compression

    def apply_failing_at_two(model, config, *a, **k):
        if config.keep_layers == 2:
            raise RuntimeError("simulated failure")
        return apply(model, config, *a, **k)

    monkeypatch.setattr(experiment, "apply_compression", apply_failing_at_two)
    result = CliRunner().invoke(app, args("1,2,3"))
    assert result.exit_code == 1, result.output
    root = next((tmp_path / "o").iterdir())
    assert root.name.endswith("_drop_layers")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["keep_layers=1", "keep_layers=3"]
    sweep = json.loads((root / "sweep.json").read_text())
    assert len(sweep["runs"]) == 2 and sweep["failed"][0]["error"] == "RuntimeError: simulated failure"
    summary = next(root.glob("*_report.md")).read_text()
    assert "What failed" in summary and "keep_layers=2" in summary

    result = CliRunner().invoke(app, ["compress", "report", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "o" / "compression_report.json").read_text())
    assert [r["layers"] for r in rows] and rows == sorted(rows, key=lambda r: -r["Score"])
    png = (tmp_path / "o" / "compression_scores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # -m with one value: the run is named by its recipe overrides (it used to be called "job").
    one = ["compress", "run", "11-23_drop_layers", "-m", "compression.keep_layers=1", "compression.heal_steps=2",
           "compression.heal_batch_size=2"] + fast(tiny_models["exaone4"], heldout, tmp_path / "one")
    assert CliRunner().invoke(app, one).exit_code == 0
    [root] = (tmp_path / "one").iterdir()
    [run_dir] = [p.name for p in root.iterdir() if p.is_dir()]
    assert run_dir.startswith("keep_layers=1,heal_steps=2,heal_batch_size=2,")  # then fast()'s calibration_*

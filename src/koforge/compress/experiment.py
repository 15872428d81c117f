"""Hydra experiments: compose, sweep, run, and write each run's folder and report.

An experiment is a YAML file (`configs/experiments/{mm-dd}_{strategy}.yaml`
shipped with koforge, or any path) whose defaults list starts from the
`koforge_compress_experiment` schema, i.e. `ExperimentConfig`: every key of the
dataclass is known to Hydra, so `compression.hidden_size=48` is a plain
override and a typo is an error. Hydra's compose API does the composition;
sweeps (`compression.keep_layers=22,24,26`, `range(...)`, `choice(...)`) are
expanded with Hydra's own override parser into the cartesian product of jobs.

Layout of the outputs:
    outputs/{yyyy-mm-dd}_{name}/            one run (or the root of a sweep)
        config.json, overrides.txt, baseline_result.json (when measured here),
        model/ (the compressed HF folder, eval_result.json inside),
        eval_result.json, {yyyy-mm-dd}_report.md
    outputs/{yyyy-mm-dd}_{name}/{key=value,...}/   one job of a sweep
Each run folder is written atomically: a run that fails leaves nothing; a
failed job of a sweep is listed, with its error, in the sweep's report.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

from koforge._utils.errors import ConfigError, KoforgeError
from koforge._utils.io import atomic_dir, write_json, write_text
from koforge._utils.logging import get_logger
from koforge.compress.apply import apply_compression, check_recipe
from koforge.compress.config import ExperimentConfig, MeasureConfig
from koforge.compress.layout import load_model, load_model_config, model_fingerprint
from koforge.compress.run_report import run_report_md, sweep_report_md
from koforge.compress.score import (MLFLOW_PARAMS, evaluate_compressed, held_out_texts, log_to_mlflow, read_baseline,
                                    run_baseline)
from koforge.config import config_to_dict, configs_dir, load_config

log = get_logger(__name__)
SCHEMA_NAME = "koforge_compress_experiment"


def experiment_path(experiment: str) -> Path:
    """A shipped experiment name (`11-23_drop_layers`) or a YAML path."""
    candidate = Path(experiment).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.exists():
            raise ConfigError(f"experiment file '{candidate}' not found. Check the path.")
        return candidate.resolve()
    shipped = configs_dir() / "experiments" / f"{experiment}.yaml"
    if not shipped.exists():
        known = sorted(p.stem for p in (configs_dir() / "experiments").glob("*.yaml"))
        raise ConfigError(f"no experiment named '{experiment}'. Shipped experiments: {', '.join(known) or 'none'}; "
                          "or pass a YAML path.")
    return shipped


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=ExperimentConfig)


def _valid_keys_hint(full_key: Optional[str]) -> str:
    """'. Valid keys of compression: ...' for an unknown `compression.x` (or top-level) key."""
    if not full_key:
        return ""
    section = full_key.split(".")[0] if "." in full_key else None
    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    cls = fields[section].default_factory if section in fields else ExperimentConfig  # type: ignore[misc]
    where = section or "the experiment"
    return f". Valid keys of {where}: {', '.join(f.name for f in dataclasses.fields(cls))}."


def compose_experiment(experiment: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Compose one experiment with Hydra (no sweep values) and validate it into `ExperimentConfig`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    path = experiment_path(experiment)
    _register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = compose(config_name=path.stem, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
        raise ConfigError(f"experiment '{experiment}' with overrides {list(overrides)}: {str(cause).splitlines()[0]}"
                          f"{_valid_keys_hint(getattr(cause, 'full_key', None))}") from None
    finally:
        GlobalHydra.instance().clear()
    return load_config(ExperimentConfig, OmegaConf.to_container(cfg, resolve=True))


def expand_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """The jobs of a multirun: cartesian product of the sweep overrides, fixed ones repeated."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {str(e).splitlines()[0]}") from None
    axes = []
    for o in parsed:
        if o.is_sweep_override():
            axes.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(job) for job in itertools.product(*axes)]


def job_name(job: Sequence[str], fixed: Sequence[str], default: str = "job") -> str:
    """A folder name from the overrides that vary across the sweep (`keep_layers=22`)."""
    # only the key is shortened: a value may hold dots (1.5, a path) and is kept whole
    split = (o.partition("=") for o in job if o not in fixed)
    parts = [key.split(".")[-1] + eq + value for key, eq, value in split]
    return ",".join(parts).replace("/", "_")[:120] or default


def _unique(path: Path) -> Path:
    return path if not path.exists() else path.with_name(f"{path.name}-{dt.datetime.now():%H%M%S}")


def _flat(prefix: str, d: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in d.items()}


def run_experiment(cfg: ExperimentConfig, run_dir: Path, *, overrides: Sequence[str] = (),
                   baseline: Optional[dict] = None, today: Optional[dt.date] = None) -> dict:
    """One run: baseline (unless given), compress, evaluate, report, MLflow; all atomic under `run_dir`."""
    today = today or dt.date.today()
    if baseline is None and cfg.baseline:
        baseline = read_baseline(cfg.baseline)
    if baseline is not None:
        model, tokenizer = load_model(cfg.model, trust_remote_code=cfg.trust_remote_code, apply_runtime=False)
        fp = model_fingerprint(model, tokenizer)
        del model
        if fp != baseline["fingerprint"]:
            raise ConfigError(f"baseline '{baseline.get('path', baseline['model'])}' was measured on another model than "
                              f"'{cfg.model}' (fingerprint {baseline['fingerprint']} vs {fp}). Drop `baseline=` to "
                              "measure it in the run, or point it at this model's baseline_result.json.")
    with atomic_dir(run_dir) as tmp:
        write_json(tmp / "config.json", config_to_dict(cfg))
        write_text(tmp / "overrides.txt", "\n".join(overrides) + ("\n" if overrides else ""))
        if baseline is None:
            baseline = run_baseline(cfg.model, cfg.measure, output=tmp / "baseline_result.json",
                                    trust_remote_code=cfg.trust_remote_code)
            baseline["path"] = str(run_dir / "baseline_result.json")
        # Calibration skips the documents the perplexity reads: those of the baseline's own measure settings.
        measured_by = load_config(MeasureConfig, baseline["measure"])
        applied = apply_compression(cfg.model, cfg.compression, tmp / "model", measure=measured_by,
                                    trust_remote_code=cfg.trust_remote_code)
        result = evaluate_compressed(tmp / "model", baseline, output=tmp / "model" / "eval_result.json",
                                     trust_remote_code=cfg.trust_remote_code)
        result.update({"name": cfg.name, "run_dir": str(run_dir), "steps": applied["steps"],
                       "overrides": list(overrides), "model": str(run_dir / "model") if cfg.save_model else None})
        result.pop("path", None)
        write_json(tmp / "eval_result.json", result)
        if not cfg.save_model:
            shutil.rmtree(tmp / "model")
        write_text(tmp / f"{today:%Y-%m-%d}_report.md", run_report_md(cfg, result, baseline))
        run_id = log_to_mlflow(dict(result, path=str(tmp / "eval_result.json")), experiment=cfg.mlflow_experiment,
                               run_name=run_dir.name,
                               extra_params=_flat("compression", config_to_dict(cfg.compression)))
        result["mlflow_run_id"] = run_id
        if run_id:
            write_json(tmp / "eval_result.json", result)
    return result


def preflight(configs: Sequence[ExperimentConfig]) -> None:
    """Check what can be checked in seconds for every job (held-out text, recipe against the model's config)
    before the first baseline is measured: a bad job would otherwise fail after minutes of work."""
    model_configs: dict[tuple[str, bool], Any] = {}
    measures: set[str] = set()
    for cfg in configs:
        measure = load_config(MeasureConfig, read_baseline(cfg.baseline)["measure"]) if cfg.baseline else cfg.measure
        key = repr(measure)
        if key not in measures:
            held_out_texts(measure)
            measures.add(key)
        if (cfg.model, cfg.trust_remote_code) not in model_configs:
            model_configs[cfg.model, cfg.trust_remote_code] = load_model_config(cfg.model,
                                                                                trust_remote_code=cfg.trust_remote_code)
        check_recipe(model_configs[cfg.model, cfg.trust_remote_code], cfg.compression)


def run(experiment: str, overrides: Sequence[str] = (), *, multirun: bool = False,
        output_root: Optional[str] = None, today: Optional[dt.date] = None) -> dict:
    """Compose and run an experiment (or a sweep with `multirun`); returns the runs and the report paths."""
    today = today or dt.date.today()
    jobs = expand_sweep(overrides) if multirun else [list(overrides)]
    if not multirun and any("," in o.split("=", 1)[-1] and not o.split("=", 1)[-1].startswith("[") for o in overrides):
        log.warning("an override has a comma but multirun is off: pass -m to sweep")
    configs = [compose_experiment(experiment, job) for job in jobs]  # every job validated before any runs
    if output_root is not None:  # recorded in each run's config.json as where it went
        configs = [dataclasses.replace(c, output_root=str(output_root)) for c in configs]
    preflight(configs)
    first = configs[0]
    root = _unique(Path(output_root or first.output_root) / f"{today:%Y-%m-%d}_{first.name}")
    if not multirun:
        result = run_experiment(first, root, overrides=jobs[0], today=today)
        return {"root": str(root), "runs": [result], "failed": [],
                "report": str(root / f"{today:%Y-%m-%d}_report.md")}
    fixed = [o for o in jobs[0] if all(o in j for j in jobs)]
    if len(jobs) == 1:  # -m with one value: named by its recipe overrides, not "job"
        fixed = [o for o in jobs[0] if not o.startswith("compression.")]
    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        if first.baseline:
            baseline = read_baseline(first.baseline)
        else:
            baseline = run_baseline(first.model, first.measure, output=root / "baseline_result.json",
                                    trust_remote_code=first.trust_remote_code)
    except BaseException:
        if created_root:
            shutil.rmtree(root, ignore_errors=True)
        raise
    runs, failed = [], []
    for job, cfg in zip(jobs, configs):
        try:
            runs.append(run_experiment(cfg, root / job_name(job, fixed, default=cfg.name), overrides=job,
                                       baseline=baseline, today=today))
        except Exception as e:  # noqa: BLE001 - one job out of memory must not lose the other jobs' results
            error = str(e) if isinstance(e, KoforgeError) else f"{type(e).__name__}: {e}"
            log.warning("job %s failed: %s", job, error)
            failed.append({"overrides": job, "error": error})
    write_json(root / "sweep.json", {"experiment": experiment, "jobs": jobs, "failed": failed,
                                     "runs": [{k: r[k] for k in ("run_dir", "overrides", "perf_norm", "speed_norm", "score")}
                                              for r in runs]})
    report = root / f"{today:%Y-%m-%d}_report.md"
    write_text(report, sweep_report_md(experiment, first, runs, failed, baseline))
    return {"root": str(root), "runs": runs, "failed": failed, "report": str(report)}


def summary_row(result: dict) -> dict[str, Any]:
    """One table row of a run: recipe, shape and metrics."""
    a = result["analysis"]
    return {"run": Path(result.get("run_dir") or result["model"]).name, **{k: a[k] for k in MLFLOW_PARAMS[:3]},
            "params_M": a["total_parameters"] / 1e6, "ppl": result["perplexity"]["perplexity"],
            "ms/token": result["speed"]["time_per_token_ms"], "PerfNorm": result["perf_norm"],
            "SpeedNorm": result["speed_norm"], "Score": result["score"]}

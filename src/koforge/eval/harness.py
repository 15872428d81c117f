"""lm-evaluation-harness glue: run its tasks (KoBEST, KMMLU, HAE-RAE...) on koforge and HF causal LMs.

`run_harness(model, HarnessConfig(tasks=[...]))` loads the model the way
`koforge eval` does (a Hugging Face folder or hub name, or a koforge LM
checkpoint, exported on the fly), wraps it in the harness's `HFLM` and calls
`lm_eval.simple_evaluate`. The Korean task groups are named in
`KOREAN_TASKS`; their data come from the Hugging Face hub, so they run where
the hub is reachable. `include_path` adds a folder of task YAML files, which is
how local tasks (and the tests) run offline.

The harness is an optional extra (`pip install "koforge[harness]"`); without
it this module still imports and `run_harness` says how to install it.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from koforge._utils.errors import ConfigError, DataError, KoforgeError
from koforge._utils.logging import get_logger

log = get_logger(__name__)

KOREAN_TASKS = {
    "kobest": "KoBEST (BoolQ, COPA, HellaSwag, SentiNeg, WiC)",
    "kmmlu": "KMMLU (45 subjects, Korean expert knowledge)",
    "haerae": "HAE-RAE Bench (Korean knowledge and culture)",
}


class HarnessUnavailableError(KoforgeError):
    """lm-evaluation-harness is not installed."""


@dataclass(kw_only=True)
class HarnessConfig:
    """How the harness runs."""

    tasks: list[str]
    """Task or group names, e.g. kobest_boolq, kobest, kmmlu, haerae, or names from include_path."""
    num_fewshot: Optional[int] = None
    """Few-shot examples per prompt (None: each task's default)."""
    limit: Optional[int] = None
    """Examples per task (None: all) - for quick checks only; scores on a limit are not comparable."""
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "float32"
    include_path: Optional[str] = None
    """A folder of extra task YAML files (local tasks)."""
    include_defaults: bool = True
    """Index the harness's ~15k built-in tasks too (takes ~15 s); False for local tasks only."""
    trust_remote_code: bool = False
    seed: int = 1234

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("HarnessConfig.tasks is empty; name at least one task (e.g. kobest_boolq).")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"HarnessConfig.limit must be >= 1 or None, got {self.limit}.")
        if self.batch_size < 1:
            raise ConfigError(f"HarnessConfig.batch_size must be >= 1, got {self.batch_size}.")
        if self.include_path is not None and not Path(self.include_path).is_dir():
            raise ConfigError(f"include_path '{self.include_path}' is not a folder of task YAML files.")


@dataclass(kw_only=True)
class HarnessResult:
    """Flat metrics (`task.metric`), one row per task metric, the settings, and the harness's raw results."""

    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)


def _lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise HarnessUnavailableError(
            "lm-evaluation-harness is not installed. Install it with: pip install \"koforge[harness]\" "
            "(or pip install lm_eval).") from None
    return lm_eval


def task_manager(include_path: Optional[str] = None, include_defaults: bool = True) -> Any:
    """The harness's TaskManager, with `include_path`'s YAML tasks added."""
    _lm_eval()
    from lm_eval.tasks import TaskManager

    if not include_defaults and not include_path:
        raise ConfigError("include_defaults=False needs an include_path with task YAML files.")
    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def check_tasks(names: Sequence[str], manager: Any) -> None:
    """Refuse unknown task names, suggesting the closest known ones."""
    known = set(manager.all_tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = {n: difflib.get_close_matches(n, known, n=3) for n in unknown}
        raise ConfigError("unknown lm-evaluation-harness task(s): " + "; ".join(
            f"'{n}'" + (f" (did you mean {', '.join(h)}?)" if h else "") for n, h in hints.items())
            + f". Korean groups: {', '.join(KOREAN_TASKS)}; local YAML tasks need --include-path.")


def _main_metric(task_scores: dict[str, Any]) -> Optional[str]:
    keys = [k for k in task_scores if "," in k and "stderr" not in k and isinstance(task_scores[k], (int, float))]
    for preferred in ("acc,", "acc_norm,", "exact_match,", "f1,", "mcc,"):
        for k in keys:
            if k.startswith(preferred):
                return k
    return keys[0] if keys else None


def summarize(raw: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Harness results -> (metrics, rows). `score` is the mean of each task's main metric (acc first)."""
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    mains: list[float] = []
    for task, scores in sorted(raw.get("results", {}).items()):
        main = _main_metric(scores)
        for key, value in scores.items():
            if "," not in key or "stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = scores.get(f"{metric}_stderr,{filt}")
            name = f"{task}.{metric}" if filt == "none" else f"{task}.{metric}.{filt}"
            metrics[name] = float(value)
            rows.append({"task": task, "metric": metric, "filter": filt, "value": float(value),
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                         "n": raw.get("n-samples", {}).get(task, {}).get("effective")})
        if main is not None and task not in raw.get("groups", {}):
            mains.append(float(scores[main]))
    if mains:
        metrics = {"score": sum(mains) / len(mains), **metrics}
    return metrics, rows


def run_harness(model: Any, config: HarnessConfig, tokenizer: Any = None) -> HarnessResult:
    """Evaluate `model` (a folder / hub name, or a loaded causal LM with `tokenizer`) on the harness tasks."""
    _lm_eval()
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    manager = task_manager(config.include_path, config.include_defaults)
    check_tasks(config.tasks, manager)
    if isinstance(model, (str, Path)):
        from koforge.eval.runner import load_causal_lm

        name = str(model)
        model, tokenizer = load_causal_lm(name, device=config.device, dtype=config.dtype,
                                          trust_remote_code=config.trust_remote_code, task="the harness")
    else:
        name = type(model).__name__
        if tokenizer is None:
            raise ConfigError("run_harness got a loaded model without its tokenizer; pass tokenizer=...")
    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=config.batch_size, device=device)
    try:
        raw = lm_eval.simple_evaluate(model=lm, tasks=list(config.tasks), num_fewshot=config.num_fewshot,
                                      limit=config.limit, task_manager=manager, log_samples=False,
                                      bootstrap_iters=0, random_seed=config.seed, numpy_random_seed=config.seed,
                                      torch_random_seed=config.seed, fewshot_random_seed=config.seed)
    except (OSError, ConnectionError) as e:
        raise DataError(f"the harness could not load the data of {', '.join(config.tasks)}: {str(e).splitlines()[0]}. "
                        "KoBEST / KMMLU / HAE-RAE download from the Hugging Face hub; check that it is reachable "
                        "(HF_HUB_OFFLINE unset) or use a local task with --include-path.") from None
    if not raw or not raw.get("results"):
        raise DataError(f"the harness returned no results for {', '.join(config.tasks)}.")
    metrics, rows = summarize(raw)
    settings = {"tasks": list(config.tasks), "num_fewshot": config.num_fewshot, "limit": config.limit,
                "batch_size": config.batch_size, "model": name, "lm_eval_version": getattr(lm_eval, "__version__", "?"),
                "include_path": config.include_path}
    return HarnessResult(metrics=metrics, rows=rows, settings=settings,
                         raw={k: raw.get(k) for k in ("results", "groups", "configs", "n-samples", "versions")})

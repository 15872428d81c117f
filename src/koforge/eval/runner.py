"""One entry point over koforge's evaluations: `run_eval(EvalConfig(task=..., model=...))`.

Each task is a function of another module (`koforge.eval.korsts`,
`...retrieval`, `...separation`, `...bitext`, `...perplexity`, `...speed`,
`...needle`, `koforge.tokenizers.evaluate`, `koforge.eval.harness`); this module only
loads the model the task needs, picks default data, calls the task and turns
its dict into an `EvalResult` (the schema `koforge report` reads).

Defaults need no network: KorSTS uses the test split bundled with koforge,
perplexity the bundled NSMC sample's last lines, speed fixed Korean prompts,
needle the bundled NSMC sample as its haystack.
Models are anything `from_pretrained` accepts: a local folder or a hub name
(the hub is only contacted for names, never for local folders), and for the
causal-LM tasks a koforge LM checkpoint or run folder too; `koforge.eval.loading`
loads them and refuses what would give a meaningless figure. `--data` paths are
checked before any model is loaded. Task modules are imported lazily so that
`koforge eval --help` stays fast and a missing optional area fails only the
task that needs it, with a clear message.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from koforge._utils.errors import ConfigError, DataError
from koforge._utils.io import check_file_output, require_path
from koforge.eval._optional import TaskUnavailableError, import_optional as _import
from koforge.eval.loading import load_causal_lm, load_embedding_model
from koforge.eval.schema import EvalResult, result_filename, write_result

__all__ = ["EvalConfig", "TASKS", "TaskUnavailableError", "load_causal_lm", "load_embedding_model", "run_eval"]

SPEED_PROMPTS = ("대한민국의 수도는", "오늘 날씨가 좋아서", "인공지능 기술은", "이 영화는 정말")


@dataclass(frozen=True)
class TaskSpec:
    """How one task is run: what it loads, its primary metric and its direction."""

    kind: str  # "embedding" | "causal_lm" | "tokenizer" | "harness"
    primary: str
    higher_is_better: bool
    doc: str


TASKS: dict[str, TaskSpec] = {
    "korsts": TaskSpec("embedding", "spearman", True, "KorSTS Spearman of cosine similarity (data: split name or TSV)"),
    "retrieval": TaskSpec("embedding", "ndcg@10", True, "KorQuAD 1.0 question -> paragraph retrieval (data: KorQuAD JSON)"),
    "separation": TaskSpec("embedding", "separation", True, "similar minus different pair cosine (data: pairs JSONL)"),
    "bitext": TaskSpec("embedding", "accuracy", True, "Korean-English bitext retrieval (data: KO_FILE EN_FILE)"),
    "perplexity": TaskSpec("causal_lm", "perplexity", False, "sliding-window perplexity (data: text files)"),
    "speed": TaskSpec("causal_lm", "time_per_token_ms", False, "greedy decode time per token (data: prompt file)"),
    "needle": TaskSpec("causal_lm", "accuracy", True, "needle in a haystack: a hidden number found over lengths x depths "
                                                      "(data: haystack text files)"),
    "tokenizer": TaskSpec("tokenizer", "chars_per_token", True, "tokenizer efficiency (data: text files; --compare)"),
    "harness": TaskSpec("harness", "score", True, "lm-evaluation-harness tasks (--harness-task kobest_boolq ...)"),
}


@dataclass(kw_only=True)
class EvalConfig:
    """What `run_eval` evaluates and how."""

    task: str
    """One of TASKS: korsts, retrieval, separation, bitext, perplexity, speed, needle, tokenizer, harness."""
    model: str
    """A model folder or hub name (tokenizer task: a tokenizer folder / tokenizer.json / hub name)."""
    tokenizer: Optional[str] = None
    """perplexity, speed, needle: the tokenizer (folder, tokenizer.json or hub name) instead of the model's own;
    needed for a model folder without one or a koforge checkpoint that records none."""
    data: list[str] = field(default_factory=list)
    """Data files for the task (see TASKS); empty = the task's default."""
    max_items: Optional[int] = None
    """Evaluate only N items: a seeded sample (in file order) of KorSTS pairs, retrieval queries or separation pairs;
    the first N bitext pairs, documents or harness examples per task."""
    batch_size: int = 32
    context: int = 256
    """perplexity: window length in tokens."""
    stride: int = 128
    """perplexity: step between windows."""
    new_tokens: Optional[int] = None
    """speed: tokens generated per prompt (default 32); needle: answer tokens decoded per prompt (default 12)."""
    repeats: int = 3
    """speed: timed passes (the median is reported)."""
    warmup: int = 1
    lengths: list[int] = field(default_factory=list)
    """needle: prompt lengths in tokens (default: powers of two from 128 to what the model's context holds, <= 4096)."""
    depths: list[float] = field(default_factory=list)
    """needle: needle depths as fractions of the haystack, 0 = start (default 0, 0.25, 0.5, 0.75, 1)."""
    trials: int = 2
    """needle: numbers hidden per (length, depth) cell."""
    device: str = "auto"
    dtype: str = "float32"
    compare: list[str] = field(default_factory=list)
    """tokenizer: other tokenizers to compare with (folders, tokenizer.json files or hub names)."""
    reference: Optional[str] = None
    """tokenizer: the row the relative changes are computed against (default: the first --compare)."""
    harness_tasks: list[str] = field(default_factory=list)
    """harness: lm-evaluation-harness task names (e.g. kobest_boolq, kmmlu, haerae)."""
    include_path: Optional[str] = None
    """harness: a folder of extra task YAML files."""
    harness_builtin: bool = True
    """harness: also index the harness's built-in tasks (False: only include_path's, much faster)."""
    num_fewshot: Optional[int] = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown evaluation task '{self.task}'. Known tasks: {', '.join(TASKS)}.")
        if not str(self.model).strip():
            raise ConfigError("model is empty; pass a model folder or a hub name.")
        for name in ("batch_size", "context", "stride", "new_tokens", "repeats", "trials"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.task == "perplexity" and self.stride > self.context:
            raise ConfigError(f"stride ({self.stride}) must be at most context ({self.context}): every token needs a "
                              "window. Pass --stride <= --context.")
        if self.max_items is not None and self.max_items < 1:
            raise ConfigError(f"max_items must be >= 1 (or unset), got {self.max_items}.")
        if self.task == "bitext" and self.data and len(self.data) != 2:
            raise ConfigError(f"bitext needs two files (Korean, English), got {len(self.data)}: {self.data}.")
        if self.tokenizer is not None and self.spec.kind != "causal_lm":
            raise ConfigError(f"tokenizer (--tokenizer) applies to perplexity and speed only, not to {self.task}.")
        if any(n < 1 for n in self.lengths):
            raise ConfigError(f"needle lengths must be >= 1 token, got {self.lengths}.")
        if any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ConfigError(f"needle depths must be fractions in [0, 1] (0 = start, 1 = end), got {self.depths}.")
        if self.task == "harness" and not self.harness_tasks:
            raise ConfigError("the harness task needs at least one lm-evaluation-harness task name "
                              "(--harness-task kobest_boolq, kmmlu, haerae, ...).")

    @property
    def spec(self) -> TaskSpec:
        return TASKS[self.task]


def sample_path(name: str) -> Path:
    """A file of the sample data bundled with koforge (see assets/samples/README.md)."""
    return Path(str(resources.files("koforge") / "assets" / "samples" / name))


# --- tasks -----------------------------------------------------------------------------------------------------

def _read_lines(paths: Sequence[str], limit: Optional[int]) -> list[str]:
    """Non-empty lines of text files (or `hf:` datasets); lines that are not UTF-8 are skipped with a warning."""
    from koforge.data.read import MissingFieldError, ReadStats, read_texts

    stats = ReadStats()
    try:
        texts = [t for t in read_texts([str(p) for p in paths], stats=stats) if t.strip()]
    except MissingFieldError as e:  # the reader's fix is --field, which `koforge eval` has no option for
        raise DataError(f"{e.problem}. koforge eval reads the 'text' field (JSONL) or column (TSV/CSV): rename it, "
                        "or pass a .txt file with one text per line.") from None
    if not texts:
        why = ""
        if stats.skipped_lines:
            why = (f": all {stats.skipped_lines} line(s) with text are not UTF-8 (first: {stats.skipped_where[0]}). "
                   "Convert the file to UTF-8, e.g. `iconv -f cp949 -t utf-8 FILE > FILE.utf8.txt`")
        raise DataError(f"no non-empty text in {', '.join(map(str, paths))}{why}.")
    return texts[:limit] if limit else texts


def check_data_paths(cfg: EvalConfig) -> None:
    """Fail on a missing --data path before a model is loaded (that can take minutes)."""
    if cfg.task == "harness" or not cfg.data:
        return
    if cfg.task == "korsts":  # a split name (train, dev, test) or a TSV path
        _import("koforge.eval.korsts", "KorSTS evaluation").resolve_korsts(cfg.data[0])
        return
    for source in cfg.data:
        if not str(source).startswith("hf:"):
            require_path(source, f"{cfg.task} data file")


def _embedding_task(cfg: EvalConfig) -> tuple[dict, dict]:
    model = load_embedding_model(cfg.model, device=cfg.device, trust_remote_code=cfg.trust_remote_code)
    bs, n = cfg.batch_size, cfg.max_items
    if cfg.task == "korsts":
        data = cfg.data[0] if cfg.data else str(sample_path("korsts_test.tsv"))
        out = _import("koforge.eval.korsts", "KorSTS evaluation").evaluate_korsts(model, data, batch_size=bs, max_pairs=n)
    elif cfg.task == "retrieval":
        if not cfg.data:
            raise ConfigError("retrieval needs the KorQuAD 1.0 JSON: --data KorQuAD_v1.0_dev.json.")
        data = cfg.data[0]
        # questions get the model's stored `query` prompt, as in `koforge embed eval`: a model trained with an
        # instruction is scored the way it is used
        from koforge.embeddings.evaluate import model_query_prompt

        out = _import("koforge.eval.retrieval", "retrieval evaluation").evaluate_korquad_retrieval(
            model, data, max_queries=n, batch_size=bs, query_prompt=model_query_prompt(model))
    elif cfg.task == "separation":
        data = cfg.data[0] if cfg.data else None
        separation = _import("koforge.eval.separation", "separation evaluation")
        out = separation.evaluate_separation(model, data, batch_size=bs, max_pairs=n)
    else:
        if not cfg.data:
            raise ConfigError("bitext needs two line-aligned files: --data ko.txt --data en.txt.")
        data = cfg.data
        out = _import("koforge.eval.bitext", "bitext evaluation").evaluate_bitext(
            model, cfg.data[0], cfg.data[1], max_pairs=n, batch_size=bs)
        out.setdefault("accuracy", out.get("primary"))
    return out, {"data": data or "bundled default"}


def _causal_task(cfg: EvalConfig) -> tuple[dict, dict]:
    # the texts first: a bad data file fails before a model that may take minutes to load
    if cfg.task == "perplexity":
        if cfg.data:
            texts = _read_lines(cfg.data, cfg.max_items)
        else:  # the bundled sample's tail: the demo trains on its head
            texts = _read_lines([str(sample_path("nsmc_reviews_sample.txt"))], None)[-(cfg.max_items or 500):]
    elif cfg.task == "needle":
        texts = _read_lines(cfg.data or [str(sample_path("nsmc_reviews_sample.txt"))], cfg.max_items)
    else:
        texts = _read_lines(cfg.data, cfg.max_items) if cfg.data else list(SPEED_PROMPTS)
    new_tokens = cfg.new_tokens or (12 if cfg.task == "needle" else 32)
    # needle checks its lengths against the model's context itself, in its own terms (--length)
    model, tokenizer = load_causal_lm(cfg.model, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                                      tokenizer=cfg.tokenizer, task=cfg.task,
                                      context=cfg.context if cfg.task == "perplexity" else None)
    if cfg.task == "perplexity":
        out = _import("koforge.eval.perplexity", "perplexity evaluation").evaluate_perplexity(
            model, tokenizer, texts, context=cfg.context, stride=cfg.stride, batch_size=min(cfg.batch_size, 8))
        window = {k: out.pop(k) for k in ("context", "stride")}  # settings, not metrics (MLflow, report columns)
        return out, {"data": cfg.data or "bundled nsmc_reviews_sample.txt (last lines)", "documents": len(texts), **window}
    if cfg.task == "needle":
        needle = _import("koforge.eval.needle", "needle-in-a-haystack evaluation")
        out = needle.evaluate_needle(model, tokenizer, texts, lengths=cfg.lengths, depths=cfg.depths or needle.DEFAULT_DEPTHS,
                                     trials=cfg.trials, new_tokens=new_tokens)
        grid = {k: out.pop(k) for k in ("trials", "new_tokens", "seed")}  # settings, not metrics
        return out, {"data": cfg.data or "bundled nsmc_reviews_sample.txt", "haystack_lines": len(texts), **grid}
    out = _import("koforge.eval.speed", "speed measurement").measure_speed(
        model, tokenizer, texts, new_tokens=new_tokens, warmup=cfg.warmup, repeats=cfg.repeats)
    timing = {k: out.pop(k) for k in ("new_tokens", "warmup", "repeats", "threads")}  # settings, not metrics
    out.pop("prompts")  # their count: the prompts themselves are recorded
    return out, {"prompts": texts, **timing}


def _tokenizer_task(cfg: EvalConfig, out_dir: Optional[Path]) -> tuple[dict, dict, list[dict], list[str]]:
    evaluate = _import("koforge.tokenizers.evaluate", "tokenizer evaluation (koforge.tokenizers)").evaluate_tokenizers
    paths = cfg.data or [str(sample_path("nsmc_reviews_sample.txt"))]
    sets = [Path(p).stem for p in paths]
    if len(set(sets)) < len(sets):  # news/ko.txt and wiki/ko.txt: one key would drop a file's texts
        sets = [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]
    if len(set(sets)) < len(sets):
        sets = [f"{n}#{i}" for i, n in enumerate(sets)]
    texts = {name: _read_lines([p], cfg.max_items or 2000) for name, p in zip(sets, paths)}
    names = [Path(cfg.model).name or cfg.model] + [Path(c).name or c for c in cfg.compare]
    if len(set(names)) < len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    tokenizers = dict(zip(names, [cfg.model, *cfg.compare]))
    reference = cfg.reference or (names[1] if len(names) > 1 else None)
    comparison = evaluate(tokenizers, texts, reference=reference)
    rows = [dict(r) if isinstance(r, Mapping) else dataclasses.asdict(r) for r in comparison.rows]
    plots: list[str] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        comparison.plot(out_dir / "tokenizer_comparison.png")
        plots.append("tokenizer_comparison.png")
    mine = [r for r in rows if r.get("tokenizer", r.get("name")) == names[0]] or rows[:1]
    metrics: dict[str, Any] = {}
    for r in mine:
        set_name = r.get("text_set", r.get("texts", r.get("dataset", "")))
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[f"{set_name}.{k}" if set_name and len(mine) > 1 else k] = v
    cpt = [v for k, v in metrics.items() if k.endswith("chars_per_token")]
    metrics["chars_per_token"] = sum(cpt) / len(cpt) if cpt else metrics.get("chars_per_token", float("nan"))
    return metrics, {"texts": paths, "tokenizers": tokenizers, "reference": reference}, rows, plots


def result_from_raw(task: str, model: str, raw: Mapping[str, Any], *, settings: Optional[Mapping[str, Any]] = None,
                    plots: Sequence[str] = (), primary: Optional[str] = None,
                    higher_is_better: Optional[bool] = None) -> EvalResult:
    """A task function's dict -> EvalResult: numbers become metrics, dicts of numbers and lists of
    row dicts become tables, anything else goes to settings. The primary metric is `primary`, else the task's."""
    spec = TASKS.get(task)
    metrics, extra, tables = {}, {}, {}
    for k, v in raw.items():
        if k == "primary":
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics[k] = v
        elif isinstance(v, Mapping) and v and all(x is None or isinstance(x, (int, float)) for x in v.values()) \
                and any(x is not None for x in v.values()):  # None: no figure for that row (a one-sided domain)
            tables[k] = [{"name": name, "value": x} for name, x in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            tables[k] = [dict(x) for x in v]
        else:
            extra[k] = v
    if not metrics:
        raise DataError(f"task '{task}' returned no numeric metric; nothing to record.")
    if primary is None:
        primary = spec.primary if spec is not None and spec.primary in metrics else next(iter(metrics))
    if higher_is_better is None:
        higher_is_better = spec.higher_is_better if spec is not None else True
    return EvalResult(task=task, model=model, metrics=metrics, primary_metric=primary, higher_is_better=higher_is_better,
                      tables=tables, plots=list(plots), settings={**extra, **(settings or {})})


def run_eval(cfg: EvalConfig, output_dir: Optional[str | Path] = None, *,
             overwrite: bool = False) -> tuple[EvalResult, Optional[Path]]:
    """Run one evaluation; write `eval_<task>.json` into `output_dir` when given. Returns (result, path)."""
    spec = cfg.spec
    out_dir = Path(output_dir) if output_dir is not None else None
    target = out_dir / result_filename(cfg.task) if out_dir is not None else None
    if target is not None:
        check_file_output(target, overwrite)
    check_data_paths(cfg)
    plots: list[str] = []
    if spec.kind == "embedding":
        raw, settings = _embedding_task(cfg)
    elif spec.kind == "causal_lm":
        raw, settings = _causal_task(cfg)
        if cfg.task == "needle" and out_dir is not None:
            from koforge.eval.needle import plot_needle

            out_dir.mkdir(parents=True, exist_ok=True)
            plots.append(plot_needle(raw, out_dir / "needle.png", title=f"needle — {Path(cfg.model).name or cfg.model}").name)
    elif spec.kind == "tokenizer":
        metrics, settings, rows, plots = _tokenizer_task(cfg, out_dir)
        raw = {**metrics, "comparison": rows}
    else:
        from koforge.eval.harness import HarnessConfig, run_harness

        hres = run_harness(cfg.model, HarnessConfig(tasks=list(cfg.harness_tasks), num_fewshot=cfg.num_fewshot,
                                                    limit=cfg.max_items, batch_size=cfg.batch_size,
                                                    device=cfg.device, dtype=cfg.dtype,
                                                    include_path=cfg.include_path,
                                                    include_defaults=cfg.harness_builtin,
                                                    trust_remote_code=cfg.trust_remote_code))
        raw, settings = {**hres.metrics, "tasks": hres.rows}, hres.settings
    result = result_from_raw(cfg.task, str(cfg.model), raw,
                             settings={**settings, "max_items": cfg.max_items,
                                       # the device a task reports it ran on (speed), else the one asked for
                                       "device": raw["device"] if isinstance(raw.get("device"), str) else cfg.device},
                             plots=plots)
    path = write_result(result, target) if target is not None else None
    return result, path

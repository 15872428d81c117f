"""`koforge eval TASK MODEL`: one entry point over koforge's evaluations, writing eval_<task>.json."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import cli_errors, console, rows_table

_TASK_HELP = ("korsts | retrieval | separation | bitext (sentence-embedding models); perplexity | speed | needle "
              "(causal LMs); tokenizer; harness (lm-evaluation-harness, e.g. --harness-task kobest).")


@cli_errors
def command(
    task: str = typer.Argument(..., help=_TASK_HELP),
    model: str = typer.Argument(..., help="Model folder or hub name (tokenizer task: tokenizer folder / tokenizer.json)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="perplexity/speed: tokenizer to use (default: the model's own or the one its koforge run recorded)."),
    data: Optional[List[str]] = typer.Option(None, "--data", "-d", help="Data file(s). Needed by retrieval (KorQuAD JSON) and bitext (KO EN files); korsts, separation, perplexity, needle and tokenizer fall back to koforge's bundled samples, speed to four built-in prompts."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for eval_<task>.json (default: evals/<model name>)."),
    max_items: Optional[int] = typer.Option(None, "--max-items", "-n", help="Evaluate only N items: the first N documents/examples/bitext pairs, a seeded sample of N KorSTS pairs, queries (retrieval) or separation pairs."),
    batch_size: int = typer.Option(32, help="Batch size."),
    context: int = typer.Option(256, help="perplexity: window length in tokens."),
    stride: int = typer.Option(128, help="perplexity: stride between windows."),
    new_tokens: Optional[int] = typer.Option(None, help="speed: tokens generated per prompt (32); needle: answer tokens (12)."),
    repeats: int = typer.Option(3, help="speed: timed passes (median reported)."),
    length: Optional[List[int]] = typer.Option(None, "--length", help="needle: prompt length in tokens (repeatable; default: powers of two up to the model's context)."),
    depth: Optional[List[float]] = typer.Option(None, "--depth", help="needle: needle depth, 0 = start .. 1 = end (repeatable; default 0 .25 .5 .75 1)."),
    trials: int = typer.Option(2, help="needle: hidden numbers per (length, depth) cell."),
    compare: Optional[List[str]] = typer.Option(None, "--compare", "-c", help="tokenizer: other tokenizers to compare with."),
    reference: Optional[str] = typer.Option(None, help="tokenizer: reference row for relative changes."),
    harness_task: Optional[List[str]] = typer.Option(None, "--harness-task", "-t", help="harness: task/group names (kobest, kmmlu, haerae...)."),
    include_path: Optional[str] = typer.Option(None, help="harness: folder of extra task YAML files."),
    builtin_tasks: bool = typer.Option(True, "--builtin-tasks/--no-builtin-tasks", help="harness: index the built-in tasks."),
    num_fewshot: Optional[int] = typer.Option(None, help="harness: few-shot examples."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps."),
    dtype: str = typer.Option("float32", help="Causal LMs: float32 | bfloat16 | float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom model code from the hub."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing eval_<task>.json."),
) -> None:
    """Evaluate MODEL on TASK and write eval_<task>.json (the schema `koforge report` reads).

    Example: koforge eval korsts sentence-transformers/all-MiniLM-L6-v2 -o evals/minilm
    Example: koforge eval perplexity runs/lm/hf --data heldout.txt --context 256
    Example: koforge eval perplexity runs/lm --tokenizer tokenizers/ko-bpe  (a koforge run: its best checkpoint)
    Example: koforge eval needle runs/lm/hf --length 128 --length 384 --trials 3   (lengths within the context)
    Example: koforge eval harness Qwen/Qwen3-0.6B -t kobest -t haerae --num-fewshot 5
    """
    from koforge.eval.runner import EvalConfig, run_eval
    from koforge.tracking import mlflow_run

    cfg = EvalConfig(task=task, model=model, tokenizer=tokenizer, data=list(data or []), max_items=max_items,
                     batch_size=batch_size, context=context, stride=stride, new_tokens=new_tokens, repeats=repeats, device=device,
                     lengths=list(length or []), depths=list(depth or []), trials=trials,
                     dtype=dtype, compare=list(compare or []), reference=reference,
                     harness_tasks=list(harness_task or []), include_path=include_path,
                     harness_builtin=builtin_tasks, num_fewshot=num_fewshot, trust_remote_code=trust_remote_code)
    out = output or Path("evals") / (Path(model).name or model.replace("/", "__"))
    with mlflow_run.tracked_run("koforge-eval", run_name=f"{task}:{Path(model).name or model}",
                                params={"task": task, "model": model, "data": cfg.data}) as run:
        result, path = run_eval(cfg, out, overwrite=overwrite)
        run.log_metrics(result.metrics)
        run.log_artifact(path)
    from koforge.report.tables import format_cell  # '.4g' printed a count of 10,880 bytes as 1.088e+04

    console.print(rows_table([{"metric": k + (" *" if k == result.primary_metric else ""), "value": format_cell(v)}
                              for k, v in result.metrics.items()], title=f"{task} — {Path(model).name or model}"))
    console.print(f"wrote [bold]{path}[/]")

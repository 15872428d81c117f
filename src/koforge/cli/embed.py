"""`koforge embed`: train a Korean sentence-embedding model in stages, evaluate any embedding model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import cli_errors, console, overrides_arg, rows_table

app = typer.Typer(help="Korean sentence embeddings: staged contrastive training (recipes) and evaluation.\n\n"
                       "Example: koforge embed train eeve-3stage ./minilm-expanded ./runs/emb stages.0.max_steps=100",
                  no_args_is_help=True)


@app.command()
@cli_errors
def train(recipe: str = typer.Argument(..., help="Recipe YAML path or shipped preset (eeve-3stage, thunder-6stage, ...)."),
          base_model: str = typer.Argument(..., help="Base model folder or hub name (plain or expanded by `koforge expand`)."),
          output_dir: Path = typer.Argument(..., help="Run folder: checkpoints/<stage>/final, comparison.md/json, metrics.png."),
          overrides: Optional[List[str]] = overrides_arg("stages.0.max_steps=100"),
          from_stage: Optional[str] = typer.Option(None, "--from-stage", help="Resume at this stage (earlier checkpoints are reused)."),
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder.")) -> None:
    """Run every stage of a recipe and print the per-stage comparison.

    Example: koforge embed train thunder-6stage ./expanded ./runs/thunder data_root=../shared/data --from-stage lora64
    """
    from koforge.config import preset_path

    preset_path("embed", recipe)  # a mistyped preset or path: said before the training libraries load (~6 s)
    from koforge.embeddings.recipe import load_recipe, run_recipe
    from koforge.embeddings.report import comparison_rows

    loaded = load_recipe(recipe, list(overrides or []))
    try:
        result = run_recipe(loaded, base_model, output_dir, from_stage=from_stage, overwrite=overwrite)
    except KeyboardInterrupt:
        from koforge._utils.errors import Interrupted

        names = [s.name for s in loaded.stages]
        done = [n for n in names if (output_dir / "checkpoints" / n / "final").is_dir()]
        todo = [n for n in names if n not in done]
        if not done or not todo:
            raise
        raise Interrupted(f"finished stages kept in '{output_dir}': {', '.join(done)}; continue with the same command "
                          f"and --from-stage {todo[0]}.") from None
    from koforge._utils.distributed import launch_rank

    if launch_rank() != 0:  # under torchrun, one process reports
        return
    console.print(rows_table(comparison_rows(result.stages), title="per-stage evaluation", floatfmt=".4f"))
    console.print(f"final model: {result.final_model}\ntable: {result.comparison.get('markdown')}  plot: {result.comparison.get('plot')}")


@app.command("eval")
@cli_errors
def evaluate(model: str = typer.Argument(..., help="Model folder (sentence-transformers layout or plain HF) or hub name."),
             overrides: Optional[List[str]] = overrides_arg("korquad_max_queries=500"),
             data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder relative eval paths resolve against "
                                                       "(default: $KOFORGE_DATA, else ../shared/data, as for recipes)."),
             output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics as JSON here."),
             overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
             pooling: Optional[str] = typer.Option(None, help="Pooling: mean, cls or lasttoken (default: a "
                                                    "sentence-transformers model's own, mean for a bare backbone)."),
             trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom model code.")) -> None:
    """Evaluate a model: KorSTS Spearman, KorQuAD NDCG/MAP/Recall/P@10, separation, bitext, MTEB tasks.

    Example: koforge embed eval ./runs/emb/checkpoints/cosent/final korsts=korsts/sts-test.tsv korquad_max_queries=500

    MTEB (pip install 'koforge\\[mteb]'): mteb_tasks=\\[korean] runs Ko-StrategyQA, AutoRAGRetrieval, MIRACLRetrieval,
    MrTidyRetrieval, BelebeleRetrieval and PublicHealthQA from the hub; mteb_tasks=\\[korquad] runs the local KorQuAD
    file through MTEB's evaluator. Retrieval queries get the model's own query prompt; "query_prompt=질문: " sets
    another, "query_prompt=''" none.
    """
    from koforge._utils.io import check_file_output, write_json
    from koforge.config import load_config
    from koforge.embeddings.evaluate import EvalSuite, check_suite_inputs, flatten, run_suite
    from koforge.embeddings.model import EmbeddingModelConfig, build_embedding_model

    suite = load_config(EvalSuite, None, list(overrides or []))
    if not (suite.korsts or suite.korquad or suite.separation or (suite.bitext_ko and suite.bitext_en) or suite.mteb_tasks):
        from koforge._utils.errors import ConfigError

        raise ConfigError("nothing to evaluate: korsts, korquad, separation, bitext_ko/bitext_en and mteb_tasks are all "
                          "off. Leave one on, e.g. drop korsts=null.")
    if output:
        check_file_output(output, overwrite)  # before minutes of encoding, not after
    root = Path(data_root or os.environ.get("KOFORGE_DATA") or Path.cwd().parent / "shared" / "data").expanduser()
    check_suite_inputs(suite, root)  # every file, before the model loads and the first task runs
    encoder = build_embedding_model(model, EmbeddingModelConfig(pooling=pooling, trust_remote_code=trust_remote_code))
    results = run_suite(encoder, suite, root)
    flat = flatten(results)
    console.print(rows_table([{"metric": k, "value": v} for k, v in flat.items() if "/per_domain/" not in k], floatfmt=".4f"))
    if output:
        write_json(output, {"model": model, "results": results, "metrics": flat})
        console.print(f"wrote {output}")
    from koforge.tracking import log_result

    log_result("koforge-embed-eval", f"eval:{Path(model).name or model}", {"model": model, "pooling": pooling},
               {k: v for k, v in flat.items() if "/per_domain/" not in k}, [output] if output else [])

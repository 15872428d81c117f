"""`koforge tokenizer`: train Korean tokenizers and compare their efficiency."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import OverridesArg, cli_errors, console, err_console, report_skips, rows_table

app = typer.Typer(help="Train byte-level BPE / SuperBPE / SentencePiece tokenizers and compare their efficiency.\n\n"
                       "Example: koforge tokenizer train -i corpus.txt -o out/tok && "
                       "koforge tokenizer eval out/tok -x reviews=reviews.txt",
                  no_args_is_help=True)

TextsOpt = typer.Option(..., "--texts", "-x", help="Text set as NAME=PATH (or PATH: named by its file, -2, -3... "
                        "when two files share a name). Repeatable.")
FieldOpt = typer.Option("text", "--field", "-f", help="JSONL field or TSV/CSV column holding the text.")
StrictOpt = typer.Option(False, "--strict", help="Fail on non-UTF-8 or malformed lines instead of skipping them (with a warning).")
LimitOpt = typer.Option(2000, "--limit", "-n", help="At most this many documents (lines or records) per text set (>= 1).")
OutOpt = typer.Option(None, "--output", "-o", help="Folder for comparison.md, comparison.json and comparison.png.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing --output folder.")


@app.command()
@cli_errors
def train(inputs: List[str] = typer.Option(..., "--input", "-i", help="Training text: file, folder or hf:NAME. Repeatable."),
          output: Path = typer.Option(..., "--output", "-o", help="Output tokenizer folder."),
          preset: Optional[str] = typer.Option("bpe-32k", "--preset", "-p", help="Preset (bpe-32k, superbpe-32k, "
                                               "sentencepiece-unigram-32k, sentencepiece-bpe-32k, bpe-32k-chat, code-bpe-32k) or a YAML file."),
          field: str = FieldOpt, strict: bool = StrictOpt,
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
          overrides: Optional[List[str]] = OverridesArg) -> None:
    """Train a tokenizer and write a Hugging Face tokenizer folder.

    Example: koforge tokenizer train -i corpus.txt -o out/tok -p bpe-32k vocab_size=16000 digits=keep
    """
    from koforge.config import load_config
    from koforge.data.read import ReadStats, read_texts
    from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

    config = load_config(TokenizerTrainConfig, preset, overrides or [], group="tokenizer")
    stats = ReadStats()
    result = train_tokenizer(read_texts(inputs, field=field, strict=strict, stats=stats), config, output, overwrite=overwrite,
                             inputs=inputs)
    console.print(rows_table([result.as_row()], title=f"koforge tokenizer train ({config.kind})"))
    report_skips(stats.skipped_lines, next(iter(stats.skipped_where), None))
    if result.vocab_size < config.vocab_size:  # the trainers stop, without a word, when no pair is left to merge
        err_console.print(f"[yellow]warning:[/] the corpus yielded {result.vocab_size:,} tokens, not vocab_size="
                          f"{config.vocab_size:,}: add text, or lower min_frequency.", highlight=False, soft_wrap=True)
    from koforge.tracking import log_result

    log_result("koforge-tokenizer", f"train:{Path(output).name}", {"inputs": inputs, **dataclasses.asdict(config)},
               {k: v for k, v in result.as_row().items() if k not in ("path", "kind")})
    console.print(f"wrote {result.path}")


def _text_set_names(specs: List[str]) -> dict[str, str]:
    """Set name -> path: NAME=PATH names must be distinct; names taken from file names get -2, -3... when they repeat."""
    from koforge._utils.errors import ConfigError

    parsed = [spec.partition("=") for spec in specs]
    explicit = [name for name, sep, _ in parsed if sep]
    repeated = sorted({n for n in explicit if explicit.count(n) > 1})
    if "" in explicit:
        raise ConfigError("a text set is given as '=PATH' with an empty name; write NAME=PATH or just PATH.")
    if repeated:
        raise ConfigError(f"text set name '{repeated[0]}' is given twice (-x {repeated[0]}=...); give each set its own name.")
    names: dict[str, str] = {}
    for name, sep, path in parsed:
        if not sep:
            path = name
            base = Path(path).name.split(".")[0]
            name, k = base, 2
            while name in names or name in explicit:
                name, k = f"{base}-{k}", k + 1
        names[name] = path
    return names


def _text_sets(specs: List[str], field: str, limit: int, strict: bool = False) -> dict[str, list[str]]:
    import itertools

    from koforge._utils.errors import ConfigError
    from koforge.data.read import read_texts

    if limit < 1:
        raise ConfigError(f"--limit/-n must be >= 1 (documents per text set), got {limit}.")
    return {name: list(itertools.islice(read_texts([path], field=field, strict=strict), limit))
            for name, path in _text_set_names(specs).items()}


def _run(tokenizers: List[str], texts: List[str], field: str, limit: int, reference: Optional[str], output: Optional[Path],
         overwrite: bool, strict: bool = False):
    from koforge._utils.io import atomic_dir, check_output, write_text
    from koforge.tokenizers.evaluate import default_names, evaluate_tokenizers

    read = [*tokenizers, *_text_set_names(texts).values()]  # what --overwrite must never replace
    if output is not None:
        check_output(output, overwrite, read)  # refuse before measuring, not after
    names = default_names(tokenizers)
    if reference is not None and reference not in names:
        matches = [n for n, spec in names.items() if str(spec) == reference]
        reference = matches[0] if matches else reference
    result = evaluate_tokenizers(names, _text_sets(texts, field, limit, strict), reference=reference)
    typer.echo(result.to_markdown())
    if output:
        with atomic_dir(output, overwrite=overwrite, inputs=read) as tmp:
            write_text(tmp / "comparison.md", result.to_markdown())
            result.to_json(tmp / "comparison.json")
            result.plot(tmp / "comparison.png")
        console.print(f"wrote {output}/comparison.md, comparison.json, comparison.png")
    from koforge.tracking import log_result

    log_result("koforge-tokenizer", "eval:" + ",".join(names), {"tokenizers": names, "texts": texts, "reference": reference},
               {f"{r['tokenizer']}/{r['text_set']}/{k}": v for r in result.rows for k, v in r.items()},
               [output / "comparison.json"] if output else [])
    return result


@app.command("eval")
@cli_errors
def eval_(tokenizers: List[str] = typer.Argument(..., help="Tokenizer folders, tokenizer.json files or hub names."),
          texts: List[str] = TextsOpt, field: str = FieldOpt, limit: int = LimitOpt,
          reference: Optional[str] = typer.Option(None, "--reference", "-r", help="Report token counts relative to this tokenizer."),
          output: Optional[Path] = OutOpt, overwrite: bool = OverwriteOpt, strict: bool = StrictOpt) -> None:
    """Measure tokenizers on named text sets: bytes/chars per token, round trip, Hangul vocabulary share, speed.

    Example: koforge tokenizer eval out/tok ../shared/tokenizers/qwen3 -x nsmc=reviews.txt -r qwen3 -o out/eval
    """
    _run(tokenizers, texts, field, limit, reference, output, overwrite, strict)


@app.command()
@cli_errors
def compare(tokenizers: List[str] = typer.Argument(..., help="Reference tokenizer first, then the others."),
            texts: List[str] = TextsOpt, field: str = FieldOpt, limit: int = LimitOpt, output: Optional[Path] = OutOpt,
            overwrite: bool = OverwriteOpt, strict: bool = StrictOpt) -> None:
    """Compare tokenizers against the first one: "-38% tokens vs qwen3" per text set.

    Example: koforge tokenizer compare ../shared/tokenizers/qwen3 out/tok -x petitions=p.jsonl -f content
    """
    from koforge.tokenizers.evaluate import default_names

    reference = next(iter(default_names(tokenizers)))
    result = _run(tokenizers, texts, field, limit, reference, output, overwrite, strict)
    for r in result.rows:
        if r["tokenizer"] != reference:
            console.print(f"{r['tokenizer']} on {r['text_set']}: {100 * r['tokens_vs_reference']:+.1f}% tokens vs {reference}")

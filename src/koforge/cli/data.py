"""`koforge data`: clean, split, describe and pack Korean corpora."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import cli_errors, console, err_console, overrides_arg, report_skips, rows_table

app = typer.Typer(help="Read, clean (NFC), de-duplicate, split, describe and pack Korean corpora.\n\n"
                       "Example: koforge data clean -i raw/ -o clean.jsonl && koforge data split -i clean.jsonl -o splits/",
                  no_args_is_help=True)

InputsOpt = typer.Option(..., "--input", "-i", help="File (.txt .jsonl .tsv .csv, or .gz), folder, or hf:NAME[:CONFIG][@SPLIT]. Repeatable.")
FieldOpt = typer.Option("text", "--field", "-f", help="JSONL field or TSV/CSV column holding the text.")
StrictOpt = typer.Option(False, "--strict", help="Fail on the first non-UTF-8 line instead of skipping it with a warning.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing output.")


@app.command()
@cli_errors
def clean(inputs: List[str] = InputsOpt, output: Path = typer.Option(..., "--output", "-o", help="Output .jsonl or .txt (optionally .gz)."),
          preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Preset (default, korean-web) or a YAML file."),
          field: str = FieldOpt, strict: bool = StrictOpt, overwrite: bool = OverwriteOpt,
          overrides: Optional[List[str]] = overrides_arg("min_chars=20")) -> None:
    """Clean (NFC, HTML, control characters, whitespace), filter and de-duplicate documents.

    Example: koforge data clean -i raw/ -o clean.jsonl -p korean-web min_chars=20
    """
    from koforge.config import load_config
    from koforge.data.clean import CleanConfig
    from koforge.data.corpus import clean_corpus

    config = load_config(CleanConfig, preset, overrides or [], group="data")
    report = clean_corpus(inputs, output, config=config, field=field, strict=strict, overwrite=overwrite)
    console.print(rows_table(report.rows(), title="koforge data clean"))
    report_skips(report.skipped_lines)
    console.print(f"wrote {report.output}")


@app.command()
@cli_errors
def split(inputs: List[str] = InputsOpt, output: Path = typer.Option(..., "--output", "-o", help="Output folder (train/validation/test.jsonl)."),
          field: str = FieldOpt, strict: bool = StrictOpt, overwrite: bool = OverwriteOpt,
          overrides: Optional[List[str]] = overrides_arg("validation=0.05")) -> None:
    """Split documents into train / validation / test by content hash (default 98/1/1; never moves a document).

    Example: koforge data split -i clean.jsonl -o splits/ train=0.9 validation=0.05 test=0.05
    """
    from koforge.config import load_config
    from koforge.data.corpus import split_corpus
    from koforge.data.split import SplitConfig

    config = load_config(SplitConfig, None, overrides or [])
    counts = split_corpus(inputs, output, config=config, field=field, strict=strict, overwrite=overwrite)
    console.print(rows_table([counts], title="documents per split"))
    console.print(f"wrote {output}")


@app.command()
@cli_errors
def stats(inputs: List[str] = typer.Argument(..., help="Files, folders or hf:NAME sources."), field: str = FieldOpt,
          strict: bool = StrictOpt, plot: Optional[Path] = typer.Option(None, "--plot", help="Write a length histogram PNG here."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write the figures as JSON here.")) -> None:
    """Count documents, characters and the Hangul share; plot the length histogram.

    Example: koforge data stats clean.jsonl --plot lengths.png
    """
    from koforge._utils.io import check_file_output, write_json
    from koforge.data.corpus import corpus_stats

    if plot is not None and plot.suffix.lower() != ".png":
        from koforge._utils.errors import ConfigError

        raise ConfigError(f"--plot writes a PNG image; name it .png (got '{plot}').")
    for out in (plot, json_out):  # a bad output path fails before reading the corpus, not after
        if out is not None:
            check_file_output(out, overwrite=True, inputs=inputs)  # a derived figure, rewritten; never onto the corpus
    result = corpus_stats(inputs, field=field, strict=strict)
    console.print(rows_table(result.rows(), title="koforge data stats"))
    if plot:
        console.print(f"wrote {result.plot(plot)}")
    if json_out:
        console.print(f"wrote {write_json(json_out, result.rows()[0])}")


def _splits(inputs: List[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Split name -> files, and the empty split files of `data split` folders that were left out."""
    from koforge.data.pack import SPLIT_NAME
    from koforge.data.split import SPLITS

    splits: dict[str, list[str]] = {}
    skipped: list[str] = []
    for item in inputs:
        name, sep, path = item.partition("=")
        if not sep or not SPLIT_NAME.fullmatch(name) or Path(item).exists():  # a path may hold '=' (lang=ko/part-0.jsonl)
            folder = Path(item)
            found = [folder / f"{s}.jsonl" for s in SPLITS if (folder / f"{s}.jsonl").exists()] if folder.is_dir() else []
            if found:
                for file in found:
                    # a small corpus or a 0 fraction leaves a split empty; packing the others keeps the pipeline going
                    if file.stat().st_size == 0:
                        skipped.append(str(file))
                    else:
                        splits.setdefault(file.stem, []).append(str(file))
                continue
            name, path = "train", item
        splits.setdefault(name, []).append(path)
    return splits, skipped


@app.command()
@cli_errors
def pack(inputs: List[str] = typer.Argument(..., help="SPLIT=PATH, a `data split` folder, or a PATH (packed as train)."),
         tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer folder, tokenizer.json or hub name."),
         output: Path = typer.Option(..., "--output", "-o", help="Output shard folder."), field: str = FieldOpt,
         workers: int = typer.Option(1, "--workers", "-w", help="Processes (1: one process, Rust threads)."),
         eos_token: Optional[str] = typer.Option(None, "--eos-token", help="Token between documents, for a tokenizer that "
                                                 "names no EOS (e.g. a bare tokenizer.json); default: the tokenizer's EOS."),
         strict: bool = StrictOpt, overwrite: bool = OverwriteOpt) -> None:
    """Tokenize splits into uint16/uint32 token shards (EOS between documents) with a JSON manifest.

    Example: koforge data pack splits/ -t out/tok -o shards/
    """
    from koforge.data.pack import PackConfig, pack_corpus

    splits, skipped = _splits(inputs)
    for file in skipped:
        err_console.print(f"[yellow]note:[/] skipping empty split file {file}.", highlight=False, soft_wrap=True)
    result = pack_corpus(splits, tokenizer, output, config=PackConfig(field=field, workers=workers, strict=strict, eos_token=eos_token),
                         overwrite=overwrite)
    console.print(rows_table(result.rows(), title=f"koforge data pack ({result.manifest.dtype})"))
    console.print(f"{result.tokens:,} tokens encoded in {result.encode_seconds:.1f}s: {result.tokens_per_second:,.0f} tokens/s, "
                  f"{result.megabytes_per_second:.2f} MB/s of text (setup {result.setup_seconds:.1f}s, total {result.seconds:.1f}s)")
    report_skips(result.skipped_lines)
    console.print(f"wrote {result.path}")

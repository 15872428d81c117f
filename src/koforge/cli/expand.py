"""`koforge expand {analyze,diff,apply}`: vocabulary expansion of an existing model."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import cli_errors, console, overrides_arg, rows_table

app = typer.Typer(help="Teach an existing model a donor tokenizer's Korean tokens (Thunder / EEVE).\n\n"
                       "Example: koforge expand apply ./qwen3-base ./ko-bpe-32k ./qwen3-ko mode=merge",
                  no_args_is_help=True)

_SELECTION_KEYS = ("script", "pattern", "min_frequency", "max_new_tokens")
"""ExpansionConfig fields read only when diffing (choosing the tokens), so ignored by `apply --tokens`."""

ConfigOpt = typer.Option(None, "--config", "-c", help="Preset name (koforge/configs/expand/) or YAML path.")


def _config(config: Optional[str], overrides: Optional[List[str]]):
    from koforge.config import load_config
    from koforge.vocab.config import ExpansionConfig

    return load_config(ExpansionConfig, config, overrides or [], group="expand")


@app.command()
@cli_errors
def analyze(base: str = typer.Argument(..., help="Base model/tokenizer folder, tokenizer.json or hub name."),
            donor: str = typer.Argument(..., help="Donor tokenizer folder, tokenizer.json or hub name."),
            text: List[Path] = typer.Option(..., "--text", "-t", help="Korean text file(s), one text (sentence, review, paragraph) a line."),
            english: Optional[Path] = typer.Option(None, "--english", help="English text file for the 'unchanged' share."),
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the analysis as JSON here."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
            trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                                       help="Allow the model's own code (only if you trust it)."),
            config: Optional[str] = ConfigOpt, overrides: Optional[List[str]] = overrides_arg("max_new_tokens=20000")) -> None:
    """Vocab sizes, overlap, tokens per line, syllable coverage and unknown rate of base, donor and both modes.

    Example: koforge expand analyze ./qwen3 ./ko-bpe-32k --text ko.txt --english en.txt
    """
    from koforge._utils.io import check_file_output, write_json
    from koforge.vocab.analyze import analyze_expansion
    from koforge.vocab.diff import read_lines

    cfg = _config(config, overrides)
    if output:
        check_file_output(output, overwrite, [base, donor, *text] + ([english] if english else []))  # before the analysis
    en = read_lines(english, cfg.eval_max_lines, "English text file") if english else ()
    result = analyze_expansion(base, donor, list(text), cfg, english=en, trust_remote_code=trust_remote_code)
    console.print(rows_table(result.rows, title="tokenizers on the Korean text"))
    console.print(f"overlap {result.diff_stats['overlap']:,} · new tokens {result.diff_stats['new_tokens']:,} · "
                  f"excluded {result.diff_stats['excluded']}")
    console.print("first new tokens: " + " ".join(repr(t) for t in result.sample_new_tokens[:20]))
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}")
    if result.recommended_mode:
        console.print(f"recommended: mode={result.recommended_mode} (fewest Korean tokens per line among the modes that "
                      "keep English token sequences exact and decode Korean as the base does)")
    elif len(result.rows) > 2:
        console.print("[yellow]no mode both keeps English exact and decodes Korean as the base does with fewer tokens[/]")
    if output:
        write_json(output, result.to_json())
        console.print(f"wrote {output}")


@app.command()
@cli_errors
def diff(base: str = typer.Argument(..., help="Base model/tokenizer folder, tokenizer.json or hub name."),
         donor: str = typer.Argument(..., help="Donor tokenizer folder, tokenizer.json or hub name."),
         output: Path = typer.Option(..., "--output", "-o", help="JSON file for the new tokens and statistics."),
         overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
         trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                                       help="Allow the model's own code (only if you trust it)."),
         config: Optional[str] = ConfigOpt, overrides: Optional[List[str]] = overrides_arg("max_new_tokens=20000")) -> None:
    """Write the donor-minus-base tokens (as text, filtered, ranked) to JSON.

    Example: koforge expand diff ./qwen3 ./ko-bpe-32k -o new_tokens.json reference=ko.txt min_frequency=5
    """
    from koforge._utils.io import check_file_output
    from koforge.vocab.diff import diff_vocabularies

    check_file_output(output, overwrite, [base, donor])
    result = diff_vocabularies(base, donor, _config(config, overrides), output=output, trust_remote_code=trust_remote_code)
    s = result.stats
    console.print(f"{s['new_tokens']:,} new tokens (donor {s['donor_vocab_size']:,}, base {s['base_vocab_size']:,}, "
                  f"overlap {s['overlap']:,}); excluded {s['excluded']}")
    console.print("first: " + " ".join(repr(t.text) for t in result.tokens[:20]))
    console.print(f"wrote {output}")


@app.command()
@cli_errors
def apply(base: str = typer.Argument(..., help="Base Hugging Face model folder or hub name."),
          donor: str = typer.Argument(..., help="Donor tokenizer folder, tokenizer.json or hub name."),
          output: Path = typer.Argument(..., help="Output folder for the expanded model."),
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
          tokens: Optional[Path] = typer.Option(None, "--tokens", help="Token list written by `koforge expand diff` "
                                                "(edit it to choose the tokens); default: diff again."),
          trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                                       help="Allow the model's own code (only if you trust it)."),
          config: Optional[str] = ConfigOpt, overrides: Optional[List[str]] = overrides_arg("init=mean")) -> None:
    """Add the donor's new tokens to the model (old ids kept), initialise their rows and save the result.

    Example: koforge expand apply ./all-MiniLM-L6-v2 ./ko-bpe-32k ./minilm-ko init=mean
    Example: koforge expand apply ./qwen3 ./ko-bpe-32k ./qwen3-ko --tokens new_tokens.json mode=merge
    """
    from koforge.vocab.expand import expand_vocabulary

    if tokens is not None:  # the file is the token list: diff-time selection would be silently skipped
        chosen = [o for o in overrides or [] if o.split("=", 1)[0].strip() in _SELECTION_KEYS]
        if chosen:
            from koforge._utils.errors import ConfigError

            raise ConfigError(f"'{chosen[0]}' selects tokens when diffing, but --tokens '{tokens}' gives the list to add; "
                              "pass it to `koforge expand diff` instead (or edit the file), or drop --tokens.")
    result = expand_vocabulary(base, donor, _config(config, overrides), output, overwrite=overwrite,
                               trust_remote_code=trust_remote_code, tokens=tokens)
    r, ko = result.report, result.report["korean_eval"]
    console.print(rows_table([{
        "mode": r["mode"], "init": r["init"], "vocab": f"{r['base_vocab_size']:,} -> {r['expanded_vocab_size']:,}",
        "tokens/line (ko)": f"{ko['tokens_per_line_before']:.2f} -> {ko['tokens_per_line_after']:.2f}",
        "unk": f"{ko['unk_rate_before']:.2%} -> {ko['unk_rate_after']:.2%}",
        "decodes back (ko)": f"{ko['roundtrip_before']:.1%} -> {ko['roundtrip_after']:.1%}",
        "English unchanged": f"{r['english_eval']['unchanged_share']:.1%}"}], title="vocabulary expansion"))
    for note in r["notes"]:
        console.print(f"[yellow]note[/]: {note}")
    from koforge.tracking import log_result

    log_result("koforge-expand", f"apply:{Path(output).name}", {"base": base, "donor": donor, "mode": r["mode"], "init": r["init"]},
               {"base_vocab_size": r["base_vocab_size"], "expanded_vocab_size": r["expanded_vocab_size"],
                **{f"korean/{k}": v for k, v in ko.items()}, "english/unchanged_share": r["english_eval"]["unchanged_share"]},
               [Path(result.path) / "expansion_report.json"])
    console.print(f"wrote {result.path} (expansion_report.md)")

"""`koforge lm`: pretrain, generate with, export and import small Korean LMs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import cli_errors, console, err_console, rows_table, text_override

app = typer.Typer(help="Small Korean LLMs: train, generate, export, import.\n\nExample: koforge lm train --data shards/ --out runs/lm",
                  no_args_is_help=True)


@app.command()
@cli_errors
def train(
    data: Path = typer.Option(..., "--data", help="Shard folder of `koforge data pack`."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, history)."),
    model: Optional[str] = typer.Option(None, help="Model preset (tiny-10m, 50m, 125m, 150m) or YAML; default "
                                        "tiny-10m, with --init-from that model's own architecture, with --resume "
                                        "the checkpoint's."),
    train_preset: str = typer.Option("train-cpu", "--train", help="Train preset (train-cpu, train-gpu) or YAML."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out "
                                "(or from train.resume_from=CKPT, which implies it), with the model and train settings "
                                "recorded there; model.* / train.* overrides change them."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete existing checkpoints in --out and start afresh "
                                   "(once data and configs are checked)."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Start from the weights of a koforge "
                                            "checkpoint/run or an exported/imported model (fresh optimiser and schedule)."),
    tokenizer: Optional[str] = typer.Option(None, help="Tokenizer for sample generations at each validation."),
    overrides: Optional[List[str]] = typer.Argument(None, help="model.KEY=VALUE / train.KEY=VALUE overrides."),
) -> None:
    """Pretrain a model on token shards, or train an imported one further (--init-from).

    Example: koforge lm train --data shards/ --out runs/tiny --model tiny-10m train.steps=500 model.n_layers=6
    """
    from koforge.config import load_config
    from koforge.lm.config import LMConfig
    from koforge.lm.load import read_model_config
    from koforge.lm.resume import RESUMED_TRAIN_FIELDS, recorded_settings
    from koforge.lm.train import TrainConfig, train_lm

    overrides = overrides or []
    bad = [o for o in overrides if not o.startswith(("model.", "train.")) or "=" not in o]
    if bad:
        from koforge._utils.errors import ConfigError

        raise ConfigError(f"override '{bad[0]}' must be model.KEY=VALUE or train.KEY=VALUE (e.g. train.steps=500).")
    extra = [text_override("data_dir", data), text_override("out_dir", out), f"overwrite={overwrite}"] \
        + ([text_override("tokenizer", tokenizer)] if tokenizer else []) + ([text_override("init_from", init_from)] if init_from else [])
    train_overrides = [o[6:] for o in overrides if o.startswith("train.")]
    train_cfg = load_config(TrainConfig, train_preset, extra + train_overrides, group="lm")
    recorded_model: dict = {}
    if resume or train_cfg.resume_from:  # continue as recorded: nothing but what changes needs repeating
        recorded_model, recorded_train = recorded_settings(train_cfg.resume_from or out)
        started_from = recorded_train.get("init_from")
        if train_cfg.init_from and not (started_from and Path(started_from).resolve() == Path(train_cfg.init_from).resolve()):
            # a resumed run keeps its own weights: other init_from weights would be silently ignored (the same
            # ones, from repeating the first command with --resume, are what the run started from)
            from koforge._utils.errors import ConfigError

            raise ConfigError(f"--init-from '{train_cfg.init_from}' starts a new run from those weights, which contradicts "
                              "--resume / train.resume_from (continue a run from its own checkpoint); pass one of them.")
        given = {o.split("=", 1)[0] for o in train_overrides}
        inherited = [f"{k}={json.dumps(v)}" for k, v in recorded_train.items()
                     if k in RESUMED_TRAIN_FIELDS and k not in given]
        train_cfg = load_config(TrainConfig, train_preset, extra + inherited + train_overrides, group="lm")
    base = model or recorded_model or (read_model_config(train_cfg.init_from).to_dict() if train_cfg.init_from
                                       else "tiny-10m")
    model_cfg = load_config(LMConfig, base, [o[6:] for o in overrides if o.startswith("model.")], group="lm")
    try:
        result = train_lm(model_cfg, train_cfg, resume=resume)
    except KeyboardInterrupt:
        from koforge._utils.errors import Interrupted
        from koforge.lm.checkpoint import list_checkpoints

        kept = list_checkpoints(out / "checkpoints") if (out / "checkpoints").is_dir() else []
        if not kept:
            raise Interrupted(f"stopped before the first checkpoint, so '{out}' holds nothing to resume; run the same "
                              "command again to start afresh.") from None
        raise Interrupted(f"checkpoints up to {kept[-1].name} are kept in '{out}'; run the same command with --resume "
                          "to continue from the latest.") from None
    from koforge._utils.distributed import launch_rank

    if launch_rank() != 0:  # under torchrun, one process reports
        return
    rows = [{k: h[k] for k in ("step", "train_loss", "val_loss", "val_ppl", "val_bpb")} for h in result.history if "val_loss" in h]
    console.print(rows_table(rows, title="validation"))
    console.print(f"best checkpoint: {result.checkpoint_dir}")
    curve = result.out_dir / "training_curve.png"
    if curve.exists():
        console.print(f"loss curve: {curve}")


def _utf8(prompt: str, index: int) -> str:
    """The prompt, refused when the shell passed bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        from koforge._utils.errors import ConfigError

        raise ConfigError(f"prompt {index} is not valid UTF-8 (bytes {e.object[e.start:e.end].encode('utf-8', 'surrogateescape')!r} "
                          f"at character {e.start}). Pass the prompt as UTF-8 text (check the terminal's or file's encoding).") from None
    return prompt


def _stop_checker(tok, stops: list[str]):
    if not stops:
        return None
    return lambda row, ids: any(s in tok.decode(ids) for s in stops)


def _continuation(tok, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text `new_ids` add after the prompt, decoded in context: word-level and SentencePiece tokenizers
    put the space between two tokens only when they decode them together."""
    head, full = tok.decode(prompt_ids), tok.decode(list(prompt_ids) + list(new_ids))
    return full[len(head):] if full.startswith(head) else tok.decode(new_ids)


def _cut(text: str, stops: list[str]) -> str:
    for s in stops:
        if s in text:
            text = text[:text.index(s)]
    return text


def _hold_back(text: str, stops: list[str]) -> str:
    """`text` without its longest tail that may begin a stop string (streamed once the next tokens tell)."""
    keep = len(text)
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                keep = min(keep, len(text) - n)
                break
    return text[:keep]


@app.command()
@cli_errors
def generate(
    model_path: Path = typer.Argument(..., help="koforge checkpoint/run folder or Hugging Face Llama folder."),
    prompts: List[str] = typer.Argument(..., help="One or more prompts (batched with left padding)."),
    tokenizer: Optional[str] = typer.Option(None, help="Tokenizer (default: the one recorded with the model)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n"),
    temperature: float = typer.Option(0.8),
    top_k: int = typer.Option(50, "--top-k"),
    top_p: float = typer.Option(1.0, "--top-p"),
    repetition_penalty: float = typer.Option(1.1, "--repetition-penalty"),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    stop_token: Optional[List[int]] = typer.Option(None, "--stop-token", help="Stop token id besides EOS (repeatable), "
                                                   "e.g. a chat template's end-of-turn token."),
    seed: Optional[int] = typer.Option(0, help="Sampling seed."),
    truncate: str = typer.Option("error", help="A prompt longer than the context: error or left (keep its end: room "
                                 "for the new tokens, but at least half the context)."),
    precision: str = typer.Option("fp32", help="fp32, int8 (CPU dynamic quantization), bf16 or fp16 (GPU)."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they come (one prompt)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the decode step: faster decoding after a "
                                 "one-off compile (tens of seconds on CPU); not with int8 or a MoE model."),
    speculative: bool = typer.Option(False, "--speculative", help="Greedy decoding drafted by the model's MTP heads "
                                     "(one prompt; the sampling options do not apply): the same tokens in fewer passes."),
) -> None:
    """Generate continuations with the KV-cache engine.

    Example: koforge lm generate runs/tiny "이 영화 정말" -n 40 --stop "."

    A model trained with mtp_heads >= 1: koforge lm generate runs/mtp "이 영화 정말" -n 40 --speculative
    """
    from koforge._utils.errors import ConfigError, TokenizerError
    from koforge.lm.deploy import quantize_int8, to_dtype
    from koforge.lm.engine import GenerationConfig, GenerationEngine
    from koforge.lm.load import open_model
    from koforge.tokenizers.io import load_tokenizer

    if "" in (stop or []):  # "" is in every text: each completion would be cut to nothing
        raise ConfigError("--stop is empty; give a non-empty stop string, or leave --stop out.")
    model, config, info = open_model(model_path)
    tok_path = tokenizer or info.get("tokenizer")
    if not tok_path:
        raise TokenizerError(f"no tokenizer recorded with '{model_path}'; pass --tokenizer PATH.")
    tok = load_tokenizer(tok_path)
    model = quantize_int8(model) if precision == "int8" else to_dtype(model, precision)
    stops = list(stop or [])
    eos = info.get("eos_id") if info.get("eos_id") is not None else tok.eos_token_id
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           repetition_penalty=repetition_penalty, seed=seed, truncate=truncate,
                           stop_tokens=([eos] if eos is not None else []) + list(stop_token or []))
    bad = [t for t in stop_token or [] if not 0 <= t < config.vocab_size]
    if bad:
        raise ConfigError(f"--stop-token {bad[0]} is not an id of this model (0..{config.vocab_size - 1}).")
    ids = [tok.encode(_utf8(p, i), add_special_tokens=False) for i, p in enumerate(prompts)]
    if speculative:
        _speculative(model, tok, prompts, ids, cfg, stops)
        return
    engine = GenerationEngine(model, max_batch=len(ids), compile=compile)
    checker = _stop_checker(tok, stops)
    if stream and len(ids) == 1:
        steps = engine.stream(ids, cfg, checker)  # checks (and truncates) the prompt before anything is printed
        used = engine.prompts[0]
        console.print(prompts[0] if used == ids[0] else tok.decode(used), end="", highlight=False)
        shown = ""
        for _ in steps:
            text = _hold_back(_cut(_continuation(tok, used, engine.partial[0]), stops), stops)
            if not text.endswith("\ufffd"):  # wait for the rest of a split multi-byte character
                console.print(text[len(shown):], end="", highlight=False, soft_wrap=True)
                shown = text
        console.print(_cut(_continuation(tok, used, engine.results[0].tokens), stops)[len(shown):], highlight=False,
                      soft_wrap=True)
        return
    results = engine.generate(ids, cfg, checker)
    console.print(rows_table([{"prompt": p, "completion": _cut(tok.decode(r.tokens), stops), "end": r.finish_reason}
                              for p, r in zip(prompts, results)], title="generations"))


def _speculative(model, tok, prompts: list[str], ids: list[list[int]], cfg, stops: list[str]) -> None:
    from koforge._utils.errors import ConfigError
    from koforge.lm.engine import fit_prompt
    from koforge.lm.speculative import speculative_generate

    if len(ids) != 1:
        raise ConfigError(f"--speculative decodes one prompt at a time; got {len(ids)}.")
    used = fit_prompt(ids[0], model.config.max_seq_len, cfg.max_new_tokens, cfg.truncate)
    result = speculative_generate(model, used, cfg.max_new_tokens, stop_tokens=cfg.stop_tokens)
    shown = prompts[0] if len(used) == len(ids[0]) else tok.decode(used)  # the prompt the model saw
    console.print(shown + _cut(_continuation(tok, used, result.tokens), stops), highlight=False, soft_wrap=True)
    console.print(f"speculative (greedy): {len(result.tokens)} tokens in {result.rounds} passes of the model after the "
                  f"prompt ({result.tokens_per_round:.2f} a pass); {result.accepted} of {result.drafted} drafts accepted "
                  f"({100 * result.acceptance:.0f}%); ended by {result.finish_reason}", style="dim", highlight=False)


@app.command("export")
@cli_errors
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="koforge checkpoint or run folder (best checkpoint)."),
    output: Path = typer.Argument(..., help="Folder to write (LlamaForCausalLM + tokenizer)."),
    tokenizer: Optional[str] = typer.Option(None, help="Tokenizer to ship (default: the one recorded in the run)."),
    onnx: Optional[Path] = typer.Option(None, help="Also write an ONNX graph here (checked against onnxruntime)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Export to a Hugging Face folder that AutoModelForCausalLM loads.

    Example: koforge lm export runs/tiny hf/tiny --onnx tiny.onnx
    """
    from koforge._utils.errors import OutputPathError
    from koforge._utils.io import check_output
    from koforge.lm.hf import export_to_hf

    if onnx is not None:  # checked before the Hugging Face folder is written
        if onnx.is_dir():
            raise OutputPathError(f"--onnx takes a file path such as {onnx / 'model.onnx'}; '{onnx}' is a folder.")
        check_output(onnx, overwrite, [checkpoint])
    new_folder = not output.exists()
    path = export_to_hf(checkpoint, output, tokenizer=tokenizer, overwrite=overwrite)
    console.print(f"wrote {path}")
    if not (Path(path) / "tokenizer.json").exists() and not (Path(path) / "tokenizer_config.json").exists():
        err_console.print(f"[yellow]warning:[/] no tokenizer recorded with '{checkpoint}' and none given, so '{path}' holds "
                          "weights only (AutoTokenizer and `compress package` need one). Re-export with --tokenizer PATH.",
                          highlight=False, soft_wrap=True)
    if onnx is not None:
        try:
            _export_onnx(checkpoint, onnx)
        except BaseException:
            if new_folder:  # an export that failed half-way leaves nothing behind
                shutil.rmtree(path, ignore_errors=True)
            raise


def _export_onnx(checkpoint: Path, onnx: Path) -> None:
    import torch

    from koforge.lm.checkpoint import load_model
    from koforge.lm.deploy import check_onnx, export_onnx

    model, config, _ = load_model(checkpoint)
    export_onnx(model, onnx)
    ids = torch.randint(0, config.vocab_size, (2, min(16, config.max_seq_len)), generator=torch.Generator().manual_seed(0))
    console.print(f"wrote {onnx} (max |onnxruntime - torch| logits: {check_onnx(model, onnx, ids):.2e})")


@app.command("import")
@cli_errors
def import_cmd(
    folder: Path = typer.Argument(..., help="Hugging Face LlamaForCausalLM folder (config.json + safetensors)."),
    output: Path = typer.Argument(..., help="Folder for the koforge checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Import a Llama model as a koforge checkpoint (for generation, export or further training).

    Example: koforge lm import hf/tiny ckpt/tiny, then koforge lm train --init-from ckpt/tiny --data shards/ --out runs/more
    """
    from koforge._utils.io import atomic_dir, check_output
    from koforge.lm.checkpoint import save_checkpoint, tokenizer_reference
    from koforge.lm.load import open_model

    check_output(output, overwrite, [folder])
    model, config, info = open_model(folder)
    meta = {"model_config": config.to_dict(), "eos_id": info.get("eos_id"), "val_loss": None,
            "tokenizer": tokenizer_reference(info.get("tokenizer")), "imported_from": str(Path(folder).resolve())}
    with atomic_dir(output, overwrite=overwrite, inputs=[folder]) as tmp:  # --overwrite replaces the whole folder
        name = save_checkpoint(tmp, 0, model, {}, meta).name
    console.print(f"wrote {output / name} ({model.num_parameters():,} parameters)")

"""`expand_vocabulary`: teach a Hugging Face model a donor's tokens (Thunder / EEVE style).

Steps: diff (donor minus base, filtered) -> expanded tokenizer (`added-tokens`
or `merge`, old ids kept, new ids appended) -> resize input and output
embeddings (tied or untied; an existing padded matrix is reused, only rows
from the base vocabulary size on are written) -> new rows from the old ones
(`init_embeddings.py`) -> one atomic output folder: config, model.safetensors,
tokenizer (in the form transformers 4.x and 5.x both load), the
sentence-transformers files of the base when it has them (modules.json,
pooling), `expansion_config.json` and `expansion_report.json/.md`.

The report always holds `base_vocab_size`, `expanded_vocab_size` and
`added_token_ids` (the exact new ids): the embeddings pipeline trains only
those rows.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from koforge._utils.errors import ConfigError, ModelLoadError, NothingToDoError
from koforge._utils.io import atomic_dir, check_output, write_json
from koforge._utils.logging import get_logger
from koforge.config import save_config
from koforge.tokenizers.io import save_tokenizer
from koforge.vocab.build import build_expanded_tokenizer
from koforge.vocab.config import ExpansionConfig
from koforge.vocab.diff import base_keys, diff_tokenizers, read_diff, read_lines
from koforge.vocab.init_embeddings import new_rows, piece_ids, same_script_old_tokens
from koforge.vocab.loading import id_space, load_model, load_tokenizer
from koforge.vocab.report import build_report, report_markdown

log = get_logger(__name__)

__all__ = ["ExpansionConfig", "ExpansionResult", "EmbeddingResizeError", "expand_vocabulary", "expand_loaded"]

# The sentence-transformers files copied from the base (with the module folders modules.json names).
_ST_FILES = {"modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"}
# Files of the base folder the expanded model rewrites (never copied).
_REWRITTEN = {"config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
              "added_tokens.json", "generation_config.json", ".gitattributes", "README.md", "chat_template.jinja"}


class EmbeddingResizeError(ModelLoadError):
    """The model's embeddings cannot be resized (no nn.Embedding input table)."""


@dataclass(kw_only=True)
class ExpansionResult:
    """What `expand_vocabulary` wrote."""

    path: Path
    report: dict[str, Any]
    added_token_ids: list[int]


def resize_embeddings(model: Any, n_vocab: int, pad_to_multiple_of: int | None) -> tuple[int, int]:
    """Grow input (and untied output) embeddings to hold `n_vocab` ids; returns (old rows, new rows)."""
    try:
        emb = model.get_input_embeddings()
    except (NotImplementedError, AttributeError) as e:
        raise EmbeddingResizeError(f"model {type(model).__name__} exposes no input embedding table ({e}); its embeddings "
                                   "cannot be resized. Expansion needs a transformers model with get_input_embeddings().") from None
    if not isinstance(emb, torch.nn.Embedding):
        raise EmbeddingResizeError(f"model {type(model).__name__} has input embeddings of type {type(emb).__name__}, not "
                                   "nn.Embedding (quantized or custom); its embeddings cannot be resized. Expand the "
                                   "unquantized model first.")
    old_rows = emb.weight.shape[0]
    target = max(old_rows, n_vocab)
    if pad_to_multiple_of:
        target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
    if target != old_rows:
        try:
            model.resize_token_embeddings(target, mean_resizing=False)
        except (NotImplementedError, AttributeError, ValueError) as e:
            raise EmbeddingResizeError(f"model {type(model).__name__} refused to resize its embeddings to {target} rows ({e}).") from None
    return old_rows, target


@torch.no_grad()
def write_new_rows(model: Any, base_tok: Any, texts: list[str], ids: list[int], n_old: int,
                   config: ExpansionConfig, pieces: list[list[int]] | None = None) -> dict[str, Any]:
    """Initialise rows `ids` of the input and (untied) output embeddings; returns facts for the report."""
    gen = torch.Generator().manual_seed(config.seed)
    pieces = pieces if pieces is not None else piece_ids(base_tok, texts)
    focus = same_script_old_tokens(base_tok, n_old) if config.init == "focus" else None
    idx = torch.tensor(ids, dtype=torch.long)
    info: dict[str, Any] = {}
    emb = model.get_input_embeddings().weight
    rows, info["input"] = new_rows(emb, n_old, texts, pieces, init=config.init, noise_std=config.noise_std, generator=gen,
                                   focus=focus, top_k=config.focus_top_k, temperature=config.focus_temperature)
    emb[idx] = rows.to(emb.dtype)
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = out is not None and out.weight.data_ptr() == emb.data_ptr()
    info["head"] = "none" if out is None else ("tied" if tied else "untied")
    if out is not None and not tied:
        rows, info["output"] = new_rows(out.weight, n_old, texts, pieces, init=config.init, noise_std=config.noise_std,
                                        generator=gen, focus=focus, top_k=config.focus_top_k, temperature=config.focus_temperature)
        out.weight[idx] = rows.to(out.weight.dtype)
        if getattr(out, "bias", None) is not None:
            bias_rows = torch.stack([out.bias[torch.tensor(p)].float().mean() for p in pieces])
            out.bias[idx] = bias_rows.to(out.bias.dtype)
    return info


def _copy_sentence_transformers_files(base: Path, out: Path) -> list[str]:
    """The base's sentence-transformers description, its module folders (pooling, dense, normalize) and koforge
    adapters, nothing else: other weight files of a hub folder (onnx/, openvino/, tf_model.h5, rust_model.ot) hold the old vocabulary."""
    if not (base / "modules.json").exists():
        return []
    try:
        modules = json.loads((base / "modules.json").read_text(encoding="utf-8"))
        folders = {m["path"] for m in modules if m.get("path")}
    except (ValueError, TypeError, KeyError) as e:
        raise ModelLoadError(f"'{base / 'modules.json'}' is not a sentence-transformers module list ({e}); "
                             "fix or remove it.") from None
    from koforge.embeddings.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS  # act on hidden states: vocabulary-free

    copied = []
    for name in sorted(_ST_FILES | folders | {ADAPTER_CONFIG, ADAPTER_WEIGHTS}):
        item = base / name
        if not item.exists() or name in _REWRITTEN:
            continue
        dest = out / name
        shutil.copytree(item, dest) if item.is_dir() else shutil.copy2(item, dest)
        copied.append(name)
    return copied


def _eval_texts(config: ExpansionConfig) -> tuple[list[str], list[str], str]:
    from importlib import resources

    from koforge.vocab.analyze import BUILTIN_ENGLISH

    ko_path = config.korean_eval or config.reference or str(resources.files("koforge") / "assets" / "samples" / "nsmc_reviews_sample.txt")
    what = "reference corpus" if not config.korean_eval and config.reference else "Korean eval text"
    korean = read_lines(ko_path, config.eval_max_lines, what)
    english = read_lines(config.english_eval, config.eval_max_lines, "English eval text") if config.english_eval else list(BUILTIN_ENGLISH)
    return korean, english, str(ko_path)


@dataclass(kw_only=True)
class _Plan:
    """Everything an expansion needs before the model: texts, the diff and the expanded tokenizer."""

    korean: list[str]
    english: list[str]
    korean_source: str
    diff: Any
    expanded: Any


def _plan(base_tok: Any, donor_tok: Any, config: ExpansionConfig, base_name: str, donor_name: str,
          tokens_file: str | Path | None = None) -> _Plan:
    korean, english, ko_source = _eval_texts(config)
    if tokens_file is not None:  # the (edited) output of `koforge expand diff`
        diff = read_diff(tokens_file)
        _, existing = base_keys(base_tok)
        known = [t.text for t in diff.tokens if t.text in existing]
        if known:  # a second id for a text the base has would move that text off its old id
            log.warning("%d token(s) of '%s' are already in base '%s' and are left out (first: %s); a list made by "
                        "`koforge expand diff` against this base has none.", len(known), tokens_file, base_name,
                        ", ".join(repr(k) for k in known[:5]))
            diff.tokens = [t for t in diff.tokens if t.text not in existing]
            diff.stats.update(already_in_base=len(known), new_tokens=len(diff.tokens))
            if not diff.tokens:
                raise NothingToDoError(f"every token of '{tokens_file}' is already in base '{base_name}'; nothing was "
                                       "written. Make the list with `koforge expand diff` against this base.")
    else:
        reference = read_lines(config.reference, config.reference_max_lines, "reference corpus") if config.reference else None
        diff = diff_tokenizers(base_tok, donor_tok, config, reference)
    if not diff.tokens:
        raise NothingToDoError(f"donor '{donor_name}' has no token to add to base '{base_name}' (excluded: "
                               f"{diff.stats.get('excluded') or 'none'}). Nothing was written. Check the donor, or loosen "
                               "script / pattern / min_frequency (`koforge expand diff` shows what is excluded).")
    expanded = build_expanded_tokenizer(base_tok, diff.tokens, config.mode, donor_tok, config.jamo_fallback)
    return _Plan(korean=korean, english=english, korean_source=ko_source, diff=diff, expanded=expanded)


def _apply(model: Any, base_tok: Any, plan: _Plan, config: ExpansionConfig, output_dir: str | Path, *, overwrite: bool,
           base_path: Path | None, base_name: str, donor_name: str, t0: float) -> ExpansionResult:
    expanded = plan.expanded
    n_base = id_space(base_tok)  # len(base_tok) when its ids have no holes
    old_rows, new_rows_n = resize_embeddings(model, id_space(expanded.tokenizer), config.pad_to_multiple_of)
    if old_rows < n_base:
        raise ModelLoadError(f"base model has {old_rows} embedding rows but its tokenizer has {n_base} tokens; "
                             "they must belong together. Pass the model folder that ships this tokenizer.")
    init_info = write_new_rows(model, base_tok, expanded.added_texts, expanded.added_ids, n_base, config, expanded.piece_ids)
    t_expand = time.perf_counter() - t0

    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(expanded.tokenizer, tmp)  # loads in transformers 4.x as well as 5.x
        copied = _copy_sentence_transformers_files(base_path, tmp) if base_path and base_path.is_dir() else []
        reloaded = load_tokenizer(tmp, what="expanded tokenizer")
        report = build_report(
            base_tok=base_tok, new_tok=reloaded, model=model, expanded=expanded, diff_stats=plan.diff.stats, n_base=n_base,
            rows=(old_rows, new_rows_n), init_info=init_info, korean=plan.korean, english=plan.english,
            korean_source=plan.korean_source, base_name=base_name, donor_name=donor_name, config=config,
            seconds=t_expand, copied=copied)
        save_config(config, tmp / "expansion_config.json")
        write_json(tmp / "expansion_report.json", report)
        (tmp / "expansion_report.md").write_text(report_markdown(report), encoding="utf-8")
    return ExpansionResult(path=Path(output_dir), report=report, added_token_ids=list(expanded.added_ids))


def expand_loaded(model: Any, base_tok: Any, donor_tok: Any, config: ExpansionConfig | None, output_dir: str | Path, *,
                  overwrite: bool = False, base_path: Path | None = None, base_name: str = "base",
                  donor_name: str = "donor") -> ExpansionResult:
    """`expand_vocabulary` on an already loaded model and tokenizers (the model is modified in place)."""
    t0 = time.perf_counter()
    config = config or ExpansionConfig()
    plan = _plan(base_tok, donor_tok, config, base_name, donor_name)
    return _apply(model, base_tok, plan, config, output_dir, overwrite=overwrite, base_path=base_path,
                  base_name=base_name, donor_name=donor_name, t0=t0)


def expand_vocabulary(base: str | Path, donor: str | Path, config: ExpansionConfig | None, output_dir: str | Path, *,
                      overwrite: bool = False, trust_remote_code: bool = False,
                      tokens: str | Path | None = None) -> ExpansionResult:
    """Expand `base` (a HF model folder or hub name) with the tokens of `donor` and write the result to `output_dir`.

    `tokens`: a diff JSON of `koforge expand diff` (edited or not) to add instead of diffing again; the donor
    still gives the merges of `merge` mode.

    The tokenizer work (diff, expanded tokenizer, eval texts) comes before the model is loaded, so a donor with
    nothing new or a mode the base cannot take fails in seconds. `config` None means the defaults.
    Raises NothingToDoError (nothing new; nothing written), ModelLoadError / TokenizerError (unloadable base or
    donor, unsupported tokenizer for `merge`), EmbeddingResizeError, OutputExistsError (without `overwrite`).
    """
    t0 = time.perf_counter()
    config = config or ExpansionConfig()
    base_path = Path(base).expanduser()
    if base_path.exists() and Path(output_dir).expanduser().resolve() == base_path.resolve():
        raise ConfigError(f"output '{output_dir}' is the base model folder itself; choose another output folder.")
    out = check_output(output_dir, overwrite, [base, donor] + ([tokens] if tokens else []))
    base_tok = load_tokenizer(base, trust_remote_code=trust_remote_code, what="base tokenizer")
    donor_tok = load_tokenizer(donor, trust_remote_code=trust_remote_code, what="donor tokenizer")
    plan = _plan(base_tok, donor_tok, config, str(base), str(donor), tokens)
    model = load_model(base, trust_remote_code=trust_remote_code)
    return _apply(model, base_tok, plan, config, out, overwrite=overwrite,
                  base_path=base_path if base_path.exists() else None, base_name=str(base), donor_name=str(donor), t0=t0)

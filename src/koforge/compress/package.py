"""`package_submission`: a submit.zip with `model/` = config.json, model.safetensors, tokenizer files.

Checks before the zip is accepted: the folder's weights are one safetensors
file (a sharded or .bin folder is re-saved as one), every tokenizer file the
tokenizer needs is there, and the extracted `model/` loads with
`AutoModelForCausalLM` / `AutoTokenizer` and runs a forward pass.
`transformers_version` in config.json is set to a target (serving stacks such
as vLLM read it); for a target below 5 the 4.x spellings are added beside the
5.x ones (`torch_dtype` for `dtype`, `rope_theta` from `rope_parameters`).
koforge's own files (eval_result.json, koforge_compression.json) stay out.
"""
from __future__ import annotations

import json
import re
import tempfile
import zipfile
from pathlib import Path

import torch

from koforge._utils.errors import DataError, ModelLoadError
from koforge._utils.io import atomic_file, publish_modes_below, require_path
from koforge.compress.layout import load_model, save_model

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json")


def _compat_config(config: dict, transformers_version: str) -> dict:
    config = dict(config, transformers_version=transformers_version)
    if int(transformers_version.split(".")[0]) < 5:
        if "dtype" in config and "torch_dtype" not in config:
            config["torch_dtype"] = config["dtype"]
        rope = config.get("rope_parameters") or {}
        if "rope_theta" in rope and "rope_theta" not in config:
            config["rope_theta"] = rope["rope_theta"]
            extra = {k: v for k, v in rope.items() if k != "rope_theta"}
            if extra.get("rope_type", "default") != "default" and "rope_scaling" not in config:
                config["rope_scaling"] = extra
    return config


@torch.inference_mode()
def _check_loads(folder: Path) -> dict:
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder))
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except SafetensorError as e:
        raise ModelLoadError(f"the weights of the model folder cannot be read ({str(e).splitlines()[0]}): the "
                             "safetensors file is corrupted or truncated. Re-save the model. Nothing was written.") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"the packaged model does not load: {str(e).splitlines()[0]}. Nothing was written.") from None
    ids = tokenizer("안녕하세요", return_tensors="pt")["input_ids"]
    logits = model(input_ids=ids).logits
    if not torch.isfinite(logits.float()).all():
        raise ModelLoadError("the packaged model gives non-finite logits. Nothing was written.")
    return {"parameters": sum(p.numel() for p in model.parameters()), "model_type": model.config.model_type}


def package_submission(model_dir: str | Path, output: str | Path = "submit.zip", *,
                       transformers_version: str = "4.54.0", overwrite: bool = False) -> dict:
    """Write `output` (a zip with `model/`) from a HF model folder; returns what it holds."""
    from koforge._utils.io import check_file_output

    src = require_path(model_dir, "model folder")
    check_file_output(output, overwrite, [src])  # a folder, or a file of the model, refused before loading it
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", transformers_version):
        raise DataError(f"transformers_version '{transformers_version}' is not a version like 4.54.0.")
    with tempfile.TemporaryDirectory(prefix="koforge-package-") as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        model, tokenizer = load_model(src, apply_runtime=False)
        save_model(model, tokenizer, staged)
        for extra in ("generation_config.json",):
            if not (staged / extra).exists() and (src / extra).exists():
                (staged / extra).write_bytes((src / extra).read_bytes())
        config = json.loads((staged / "config.json").read_text(encoding="utf-8"))
        (staged / "config.json").write_text(json.dumps(_compat_config(config, transformers_version), indent=2,
                                                       ensure_ascii=False) + "\n", encoding="utf-8")
        publish_modes_below(staged)  # the zip keeps each file's mode: weights readable by the grader's user
        names = sorted(p.name for p in staged.iterdir())
        missing = [n for n in ("config.json", "model.safetensors") if n not in names]
        if missing or not any(n in names for n in ("tokenizer.json", "tokenizer.model")):
            raise DataError(f"the package would miss {missing or 'a tokenizer file'} (has: {', '.join(names)}).")
        info = _check_loads(staged)
        with atomic_file(output, overwrite=True) as tmp_zip:
            with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name in names:
                    zf.write(staged / name, f"model/{name}")
    return {"output": str(output), "files": [f"model/{n}" for n in names], "transformers_version": transformers_version,
            "size_mb": Path(output).stat().st_size / 1e6, **info}

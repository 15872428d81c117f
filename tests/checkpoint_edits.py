"""Damaged copies of a saved model folder, for the tests of "corrupted or incomplete checkpoint" messages."""
from __future__ import annotations

import shutil
from pathlib import Path


def truncated_copy(src: Path, dest: Path) -> Path:
    """`src` copied to `dest` with model.safetensors cut in half (an interrupted download)."""
    shutil.copytree(src, dest)
    weights = dest / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return dest


def copy_without(src: Path, dest: Path, marker: str) -> Path:
    """`src` copied to `dest` without the tensors whose name contains `marker` (a checkpoint missing a layer)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest)
    state = load_file(str(dest / "model.safetensors"))
    save_file({k: v for k, v in state.items() if marker not in k}, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest

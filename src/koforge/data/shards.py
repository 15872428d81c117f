"""Binary token shards: the LM trainer's input format.

A shard folder holds `manifest.json` and, per split, files
`{split}_{index:05d}.bin`: flat little-endian uint16 (vocab <= 65,535) or
uint32 token ids, documents separated by the EOS id. The manifest records the
dtype, EOS id, vocab size, the tokenizer's fingerprint (sha256 of its
`tokenizer.json`) and, per split, tokens, documents and UTF-8 bytes of the
source text (so bits per byte can be computed without the tokenizer).
Shards are read back as numpy memmaps, so a corpus larger than memory works;
their sizes are checked against the manifest first (a truncated copy is
refused, never trained on).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from koforge._utils.errors import DataError
from koforge._utils.io import atomic_file, read_json, require_path, write_json

FORMAT = "koforge-shards-v1"
MANIFEST = "manifest.json"


@dataclasses.dataclass(kw_only=True)
class SplitInfo:
    """What one split of a shard folder holds."""

    files: list[str]
    tokens: int
    documents: int
    bytes: int


@dataclasses.dataclass(kw_only=True)
class ShardManifest:
    """The manifest of a shard folder."""

    format: str = FORMAT
    dtype: str
    eos_id: int
    vocab_size: int
    """Every id in the shards is below this: 1 + the tokenizer's largest id (the LM's minimum vocab_size)."""
    tokenizer_fingerprint: str
    splits: dict[str, SplitInfo]

    @classmethod
    def read(cls, folder: str | Path) -> "ShardManifest":
        """Read and check `folder/manifest.json`."""
        folder = require_path(folder, "shard folder")
        path = folder / MANIFEST
        if not path.exists():
            raise DataError(f"'{folder}' has no {MANIFEST}: it is not a koforge shard folder. Create one with `koforge data pack`.")
        raw = read_json(path, "shard manifest")
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        if found != FORMAT:
            raise DataError(f"'{path}' has format {found!r}, expected {FORMAT!r}. Re-pack with `koforge data pack`.")
        try:
            manifest = cls(**{**raw, "splits": {k: SplitInfo(**v) for k, v in raw["splits"].items()}})
        except (TypeError, KeyError, AttributeError) as e:  # hand-edited, or cut short by a full disk
            detail = f"no key {e}" if isinstance(e, KeyError) else str(e)
            raise DataError(f"'{path}' is not a valid shard manifest ({detail}). Re-pack with `koforge data pack`.") from None
        if manifest.dtype not in ("uint16", "uint32"):
            raise DataError(f"'{path}' has dtype {manifest.dtype!r}, expected uint16 or uint32. Re-pack with `koforge data pack`.")
        return manifest

    def write(self, folder: str | Path) -> Path:
        """Write the manifest atomically."""
        return write_json(Path(folder) / MANIFEST, dataclasses.asdict(self))


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id (0 .. vocab_size - 1) fits, i.e. up to 65,536 ids; else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_split(folder: Path, split: str, documents: Iterable[tuple[list[int], int]], *, eos_id: int,
                dtype: np.dtype, shard_tokens: int = 50_000_000) -> SplitInfo:
    """Write `(token_ids, utf8_bytes)` documents as EOS-separated shards of at most `shard_tokens`."""
    files: list[str] = []
    n_tokens = n_docs = n_bytes = 0
    buffer: list[np.ndarray] = []
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        if not buffered:
            return
        name = f"{split}_{len(files):05d}.bin"
        with atomic_file(folder / name) as tmp:
            np.concatenate(buffer).astype(dtype).tofile(tmp)
        files.append(name)
        buffer, buffered = [], 0

    for ids, size in documents:
        buffer.append(np.asarray(ids, dtype=dtype))
        buffer.append(np.asarray([eos_id], dtype=dtype))
        buffered += len(ids) + 1
        n_tokens += len(ids) + 1
        n_docs += 1
        n_bytes += size
        if buffered >= shard_tokens:
            flush()
    flush()
    return SplitInfo(files=files, tokens=n_tokens, documents=n_docs, bytes=n_bytes)


def open_split(folder: str | Path, split: str) -> tuple[ShardManifest, list[np.memmap]]:
    """Memory-map every shard of `split`; errors name the folder and the fix."""
    folder = Path(folder)
    manifest = ShardManifest.read(folder)
    if split not in manifest.splits or not manifest.splits[split].files:
        raise DataError(f"shard folder '{folder}' has no tokens for split '{split}' "
                        f"(splits: {', '.join(k for k, v in manifest.splits.items() if v.files) or 'none'}). Pack it with `koforge data pack`.")
    info, dtype = manifest.splits[split], np.dtype(manifest.dtype)
    fix = f"Rebuild the folder: re-run `koforge data pack` (with --overwrite to replace '{folder}')."
    sizes = {}
    for name in info.files:
        path = folder / name
        if not path.exists():
            raise DataError(f"shard '{path}' listed in the manifest is missing. {fix}")
        size = path.stat().st_size
        # write_split never writes an empty shard, and a partial token means the copy or write was cut short.
        if size == 0 or size % dtype.itemsize:
            raise DataError(f"shard '{path}' is {size} bytes, not a positive multiple of {dtype.itemsize} "
                            f"({dtype.name} token ids): it is empty or truncated. {fix}")
        sizes[path] = size // dtype.itemsize
    if sum(sizes.values()) != info.tokens:
        found = ", ".join(f"'{p}': {n} tokens" for p, n in sizes.items())
        raise DataError(f"split '{split}' of '{folder}' holds {sum(sizes.values())} tokens ({found}) but the manifest "
                        f"records {info.tokens}: a shard is truncated or was changed after packing. {fix}")
    return manifest, [np.memmap(path, dtype=dtype, mode="r") for path in sizes]


def iter_documents(folder: str | Path, split: str) -> Iterator[np.ndarray]:
    """Yield each document's token ids (EOS removed) of a split, in order."""
    manifest, maps = open_split(folder, split)
    for m in maps:
        ends = np.flatnonzero(m == manifest.eos_id)
        start = 0
        for end in ends:
            yield np.asarray(m[start:end])
            start = end + 1

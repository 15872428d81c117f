"""Tokenize text splits into binary token shards (`koforge data pack`).

Documents are encoded in batches with the Rust `encode_batch` (multi-threaded
inside one process), or, with `workers > 1`, by a pool of processes each
holding the tokenizer; order is preserved either way. Special-token strings
that occur inside the text are encoded as plain text (`encode_special_tokens`),
so a document containing "</s>" can never fake a document boundary. The
shards are written through `koforge.data.shards` into a temporary folder that
replaces the output only when every split succeeded.
"""
from __future__ import annotations

import dataclasses
import itertools
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from koforge._utils.errors import ConfigError, DataError, TokenizerError
from koforge._utils.io import atomic_dir, check_output
from koforge._utils.progress import progress
from koforge.data.read import ReadStats, read_texts
from koforge.data.shards import ShardManifest, SplitInfo, token_dtype, write_split
from koforge.tokenizers.io import load_tokenizer, tokenizer_fingerprint


@dataclasses.dataclass(kw_only=True)
class PackConfig:
    """How `pack_corpus` reads and encodes."""

    field: str = "text"
    """JSONL field / TSV-CSV column holding the text."""
    batch_size: int = 1000
    """Documents per encode_batch call."""
    workers: int = 1
    """1: one process (encode_batch is already multi-threaded); >1: a pool of that many processes."""
    shard_tokens: int = 50_000_000
    """At most this many tokens per shard file."""
    strict: bool = False
    """Fail on the first non-UTF-8 line instead of skipping it."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1 or self.shard_tokens < 1:
            raise ConfigError(f"batch_size ({self.batch_size}), workers ({self.workers}) and shard_tokens "
                              f"({self.shard_tokens}) must all be >= 1.")


@dataclasses.dataclass(kw_only=True)
class PackResult:
    """What was packed and how fast."""

    path: Path
    manifest: ShardManifest
    seconds: float
    skipped_lines: int

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.manifest.splits.values())

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @property
    def megabytes_per_second(self) -> float:
        return sum(s.bytes for s in self.manifest.splits.values()) / 1e6 / max(self.seconds, 1e-9)

    def rows(self) -> list[dict[str, Any]]:
        return [{"split": k, "documents": v.documents, "tokens": v.tokens, "bytes": v.bytes, "files": len(v.files),
                 "bytes/token": round(v.bytes / max(1, v.tokens - v.documents), 3)} for k, v in self.manifest.splits.items()]


_WORKER_TOKENIZER: Any = None


def _encoder(tokenizer_json: str) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.encode_special_tokens = True
    return tok


def _init_worker(tokenizer_json: str) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_TOKENIZER = _encoder(tokenizer_json)


def _encode_with(tok: Any, batch: list[str]) -> list[tuple[list[int], int]]:
    return [(e.ids, len(t.encode("utf-8"))) for t, e in zip(batch, tok.encode_batch(batch, add_special_tokens=False))]


def _encode_in_worker(batch: list[str]) -> list[tuple[list[int], int]]:
    return _encode_with(_WORKER_TOKENIZER, batch)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _documents(texts: Iterable[str], tokenizer_json: str, config: PackConfig, pool: Any, label: str) -> Iterator[tuple[list[int], int]]:
    bar = progress(desc=f"pack {label}", unit="doc")
    if pool is None:
        tok = _encoder(tokenizer_json)
        encoded = (_encode_with(tok, b) for b in _batches(texts, config.batch_size))
    else:
        encoded = pool.imap(_encode_in_worker, _batches(texts, config.batch_size))
    for docs in encoded:
        bar.update(len(docs))
        yield from docs
    bar.close()


def pack_corpus(splits: Mapping[str, Sequence[str | Path] | str | Path], tokenizer: Any, output_dir: str | Path, *,
                config: PackConfig | None = None, overwrite: bool = False) -> PackResult:
    """Encode each named split's texts into EOS-separated token shards with a manifest."""
    config = config or PackConfig()
    if not splits:
        raise DataError("nothing to pack: give at least one split, e.g. {'train': ['train.jsonl']}.")
    output_dir = check_output(output_dir, overwrite)
    tok = load_tokenizer(tokenizer)
    if tok.eos_token_id is None:
        raise TokenizerError(f"tokenizer '{getattr(tok, 'name_or_path', tokenizer)}' has no EOS token; packing needs one "
                             "between documents. Train it with eos_token set, or set tokenizer.eos_token.")
    tokenizer_json = tok.backend_tokenizer.to_str()
    vocab_size = max(len(tok), tok.backend_tokenizer.get_vocab_size(with_added_tokens=True))
    dtype = token_dtype(vocab_size)
    stats = ReadStats()
    sources = {name: read_texts([s] if isinstance(s, (str, Path)) else list(s), field=config.field, strict=config.strict,
                                stats=stats) for name, s in splits.items()}
    start = time.perf_counter()
    infos: dict[str, SplitInfo] = {}
    pool = mp.get_context("spawn").Pool(config.workers, _init_worker, (tokenizer_json,)) if config.workers > 1 else None
    try:
        with atomic_dir(output_dir, overwrite=overwrite) as tmp:
            for name, texts in sources.items():
                docs = _documents(texts, tokenizer_json, config, pool, name)
                infos[name] = write_split(tmp, name, docs, eos_id=tok.eos_token_id, dtype=dtype, shard_tokens=config.shard_tokens)
                if infos[name].documents == 0:
                    raise DataError(f"split '{name}' is empty: its input holds no documents. Check the paths and --field.")
            manifest = ShardManifest(dtype=dtype.name, eos_id=int(tok.eos_token_id), vocab_size=vocab_size,
                                     tokenizer_fingerprint=tokenizer_fingerprint(tok), splits=infos)
            manifest.write(tmp)
    finally:
        if pool is not None:
            pool.terminate()
    return PackResult(path=Path(output_dir), manifest=manifest, seconds=time.perf_counter() - start,
                      skipped_lines=stats.skipped_lines)

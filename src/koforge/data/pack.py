"""Tokenize text splits into binary token shards (`koforge data pack`).

Documents are encoded in batches with the Rust `encode_batch_fast` (multi-threaded
inside one process; no character offsets, which packing does not need: ~1.4x
`encode_batch` on short reviews), or, with `workers > 1`, by a pool of processes each
holding the tokenizer; order is preserved either way. Special-token strings
that occur inside the text are encoded as plain text (`encode_special_tokens`),
so a document containing "</s>" can never fake a document boundary. The
shards are written through `koforge.data.shards` into a temporary folder that
replaces the output only when every split succeeded.

The EOS id between documents is the tokenizer's own, or `PackConfig.eos_token`
for a tokenizer that names none (a bare tokenizer.json). Throughput is encoding
time only (the Rust `encode_batch` calls, or waiting on the worker pool);
loading the tokenizer and starting workers is reported as setup.
"""
from __future__ import annotations

import dataclasses
import itertools
import multiprocessing as mp
import os
import queue
import re
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from koforge._utils.errors import ConfigError, DataError, TokenizerError
from koforge._utils.io import atomic_dir, check_output
from koforge._utils.progress import progress
from koforge.data.read import ReadStats, read_texts
from koforge.data.shards import ShardManifest, SplitInfo, token_dtype, write_split
from koforge.tokenizers.io import load_tokenizer, tokenizer_fingerprint, tokenizer_name


@dataclasses.dataclass(kw_only=True)
class PackConfig:
    """How `pack_corpus` reads and encodes."""

    field: str = "text"
    """JSONL field / TSV-CSV column holding the text."""
    batch_size: int = 10_000
    """Documents per encode call (larger batches keep the Rust threads busier)."""
    workers: int = 1
    """1: one process (encode_batch is already multi-threaded); >1: a pool of that many processes."""
    shard_tokens: int = 50_000_000
    """At most this many tokens per shard file."""
    strict: bool = False
    """Fail on the first non-UTF-8 line instead of skipping it."""
    eos_token: str | None = None
    """Token placed between documents (None: the tokenizer's EOS). Needed for a tokenizer that names no EOS."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers", "shard_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1" + (" (--workers/-w)." if name == "workers" else "."))


@dataclasses.dataclass(kw_only=True)
class PackResult:
    """What was packed and how fast."""

    path: Path
    manifest: ShardManifest
    seconds: float
    """Wall-clock time of the whole call."""
    encode_seconds: float
    """Time spent encoding (the base of the throughput figures)."""
    setup_seconds: float
    """Loading the tokenizer and starting worker processes."""
    skipped_lines: int

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.manifest.splits.values())

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.encode_seconds, 1e-9)

    @property
    def megabytes_per_second(self) -> float:
        return sum(s.bytes for s in self.manifest.splits.values()) / 1e6 / max(self.encode_seconds, 1e-9)

    def rows(self) -> list[dict[str, Any]]:
        return [{"split": k, "documents": v.documents, "tokens": v.tokens, "bytes": v.bytes, "files": len(v.files),
                 "bytes/token": round(v.bytes / max(1, v.tokens - v.documents), 3)} for k, v in self.manifest.splits.items()]


_WORKER_TOKENIZER: Any = None
SPLIT_NAME = re.compile(r"[A-Za-z0-9][\w-]*")


def _encoder(tokenizer_json: str) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.encode_special_tokens = True
    return tok


def _init_worker(tokenizer_json: str, ready: Any) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_TOKENIZER = _encoder(tokenizer_json)
    ready.put(os.getpid())


def _start_pool(workers: int, tokenizer_json: str) -> Any:
    """A pool of spawned encoders, returned once every worker holds the tokenizer (so startup is not timed as encoding)."""
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    pool = ctx.Pool(workers, _init_worker, (tokenizer_json, ready))
    try:
        for _ in range(workers):
            ready.get(timeout=300)
    except queue.Empty:
        pool.terminate()
        raise DataError(f"the {workers} worker processes did not start within 5 minutes; retry with --workers 1.") from None
    return pool


def _encode_with(tok: Any, batch: list[str]) -> list[tuple[list[int], int]]:
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # tokenizers < 0.21 lacks the offset-free one
    return [(e.ids, len(t.encode("utf-8"))) for t, e in zip(batch, encode(batch, add_special_tokens=False))]


def _encode_in_worker(batch: list[str]) -> list[tuple[list[int], int]]:
    return _encode_with(_WORKER_TOKENIZER, batch)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(itertools.islice(it, size)):
        yield batch


class _EncodeClock:
    """Seconds spent encoding, summed over batches."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def encode(self, tok: Any, batches: Iterable[list[str]]) -> Iterator[list[tuple[list[int], int]]]:
        """Encode in this process, timing encode_batch alone (not reading the batch)."""
        for batch in batches:
            start = time.perf_counter()
            docs = _encode_with(tok, batch)
            self.seconds += time.perf_counter() - start
            yield docs

    def wait(self, results: Iterator[list[tuple[list[int], int]]]) -> Iterator[list[tuple[list[int], int]]]:
        """Yield a pool's results, timing the waits (the pool reads ahead on its own thread, so a wait is encoding)."""
        while True:
            start = time.perf_counter()
            docs = next(results, None)
            self.seconds += time.perf_counter() - start
            if docs is None:
                return
            yield docs


def _documents(texts: Iterable[str], tokenizer_json: str, config: PackConfig, pool: Any, label: str,
               clock: _EncodeClock) -> Iterator[tuple[list[int], int]]:
    bar = progress(desc=f"pack {label}", unit="doc")
    if pool is None:
        encoded = clock.encode(_encoder(tokenizer_json), _batches(texts, config.batch_size))
    else:
        encoded = clock.wait(pool.imap(_encode_in_worker, _batches(texts, config.batch_size)))
    for docs in encoded:
        bar.update(len(docs))
        yield from docs
    bar.close()


def _separator_candidates(tok: Any) -> list[str]:
    """Tokens of this vocabulary that could stand between documents, its own separator first."""
    names = [getattr(tok, "sep_token", None), "</s>", "<|endoftext|>", "<eos>", "<|im_end|>", "[SEP]"]
    return list(dict.fromkeys(t for t in names if t and tok.backend_tokenizer.token_to_id(t) is not None))


def _eos_id(tok: Any, name: str, eos_token: str | None) -> int:
    """The id placed between documents: `eos_token`'s if given, else the tokenizer's EOS."""
    held = _separator_candidates(tok)
    example = f"--eos-token '{held[0]}'" if held else "--eos-token TOKEN"
    if eos_token is not None:
        eos_id = tok.backend_tokenizer.token_to_id(eos_token)
        if eos_id is None:
            raise TokenizerError(f"--eos-token {eos_token!r} is not in the vocabulary of tokenizer '{name}'. "
                                 f"Pass a token it holds ({', '.join(held) or 'none of </s>, <|endoftext|>, [SEP]'}).")
        return eos_id
    if tok.eos_token_id is None:
        raise TokenizerError(f"tokenizer '{name}' names no EOS token; packing needs one between documents. "
                             f"Pass {example} (PackConfig.eos_token), or train the tokenizer with eos_token set.")
    return int(tok.eos_token_id)


def pack_corpus(splits: Mapping[str, Sequence[str | Path] | str | Path], tokenizer: Any, output_dir: str | Path, *,
                config: PackConfig | None = None, overwrite: bool = False) -> PackResult:
    """Encode each named split's texts into EOS-separated token shards with a manifest."""
    config = config or PackConfig()
    if not splits:
        raise DataError("nothing to pack: give at least one split, e.g. {'train': ['train.jsonl']}.")
    for name in splits:  # a name becomes a file name: "../x" would write outside the output folder
        if not SPLIT_NAME.fullmatch(name):
            raise ConfigError(f"split name {name!r} must be letters, digits, '_' or '-' (e.g. train=PATH, validation=PATH).")
    start = time.perf_counter()
    files = [f for s in splits.values() for f in ([s] if isinstance(s, (str, Path)) else s)]
    output_dir = check_output(output_dir, overwrite, inputs=files)
    tok = load_tokenizer(tokenizer)
    eos_id = _eos_id(tok, tokenizer_name(tokenizer), config.eos_token)
    tokenizer_json = tok.backend_tokenizer.to_str()
    # ids can have holes (GPT-4o: 200,000 tokens, ids up to 200,018): the id space, not the token count, sizes dtype and LM
    vocab_size = 1 + max(tok.backend_tokenizer.get_vocab(with_added_tokens=True).values())
    dtype = token_dtype(vocab_size)
    stats = ReadStats()
    sources = {name: read_texts([s] if isinstance(s, (str, Path)) else list(s), field=config.field, strict=config.strict,
                                stats=stats) for name, s in splits.items()}
    infos: dict[str, SplitInfo] = {}
    clock = _EncodeClock()
    pool = _start_pool(config.workers, tokenizer_json) if config.workers > 1 else None
    setup_seconds = time.perf_counter() - start
    try:
        with atomic_dir(output_dir, overwrite=overwrite) as tmp:
            for name, texts in sources.items():
                docs = _documents(texts, tokenizer_json, config, pool, name, clock)
                infos[name] = write_split(tmp, name, docs, eos_id=eos_id, dtype=dtype, shard_tokens=config.shard_tokens)
                if infos[name].documents == 0:
                    raise DataError(f"split '{name}' is empty: its input holds no documents. Check the paths and --field.")
            manifest = ShardManifest(dtype=dtype.name, eos_id=eos_id, vocab_size=vocab_size,
                                     tokenizer_fingerprint=tokenizer_fingerprint(tok), splits=infos)
            manifest.write(tmp)
    finally:
        if pool is not None:
            pool.terminate()
    return PackResult(path=Path(output_dir), manifest=manifest, seconds=time.perf_counter() - start,
                      encode_seconds=clock.seconds, setup_seconds=setup_seconds, skipped_lines=stats.skipped_lines)

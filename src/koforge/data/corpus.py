"""Corpus-level jobs behind `koforge data clean | split | stats`.

Each job streams documents from `read_texts`, so memory stays flat except
for what the job must remember (de-duplication digests; one integer per
document for the length statistics). Outputs are `.jsonl` (`{"text": ...}`)
or `.txt` (one document per line, inner newlines turned into spaces),
optionally `.gz`, and are written atomically: an empty result or an error
leaves nothing behind.
"""
from __future__ import annotations

import array
import contextlib
import dataclasses
import gzip
import json
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from koforge._utils.errors import DataError
from koforge._utils.io import atomic_dir, atomic_file, check_output, write_json
from koforge._utils.progress import progress
from koforge.config import config_to_dict
from koforge.data.clean import CleanConfig, NearDuplicateFilter, clean_text, is_hangul, text_digest
from koforge.data.read import ReadStats, read_texts
from koforge.data.split import SPLITS, SplitConfig, assign_split

OUTPUT_SUFFIXES = (".jsonl", ".txt")


def _output_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind not in OUTPUT_SUFFIXES:
        raise DataError(f"output '{path}' must end in .jsonl or .txt (optionally .gz), got '{''.join(path.suffixes) or '(none)'}'.")
    return kind


@contextlib.contextmanager
def _writer(tmp: Path, final: Path) -> Iterator[Any]:
    kind = _output_kind(final)
    f: IO[str] = gzip.open(tmp, "wt", encoding="utf-8") if final.suffix.lower() == ".gz" else open(tmp, "w", encoding="utf-8")

    def write(text: str) -> None:
        f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n" if kind == ".jsonl" else text.replace("\n", " ") + "\n")

    with f:
        yield write


@dataclasses.dataclass(kw_only=True)
class CleanReport:
    """What `clean_corpus` read, kept and dropped."""

    output: Path
    read: int
    kept: int
    filtered: int
    duplicates: int
    near_duplicates: int
    skipped_lines: int

    def rows(self) -> list[dict[str, Any]]:
        return [{"read": self.read, "kept": self.kept, "filtered": self.filtered, "duplicates": self.duplicates,
                 "near duplicates": self.near_duplicates, "unreadable lines": self.skipped_lines}]


def clean_corpus(sources: Sequence[str | Path], output: str | Path, *, config: CleanConfig | None = None,
                 field: str = "text", strict: bool = False, overwrite: bool = False) -> CleanReport:
    """Clean, filter and de-duplicate documents into one `.jsonl` / `.txt` file."""
    config = config or CleanConfig()
    output = check_output(output, overwrite, inputs=sources)
    _output_kind(output)
    stats = ReadStats()
    texts = read_texts(sources, field=field, strict=strict, stats=stats)
    seen: set[bytes] = set()
    near = NearDuplicateFilter(threshold=config.near_threshold) if config.dedup == "near" else None
    n_read = kept = filtered = dups = near_dups = 0
    with atomic_file(output, overwrite=overwrite) as tmp, _writer(tmp, output) as write:
        for raw in progress(texts, desc="clean", unit="doc"):
            n_read += 1
            text = clean_text(raw, config)
            if text is None:
                filtered += 1
                continue
            if config.dedup != "none":
                key = text_digest(text)
                if key in seen:
                    dups += 1
                    continue
                seen.add(key)
            if near is not None and near.is_duplicate(text):
                near_dups += 1
                continue
            write(text)
            kept += 1
        if n_read == 0:
            raise DataError(f"empty corpus: no documents in {', '.join(map(str, sources))}. Check the paths and --field.")
        if kept == 0:
            raise DataError(f"nothing left after cleaning: all {n_read} documents were filtered or duplicates. Loosen the filters.")
    return CleanReport(output=output, read=n_read, kept=kept, filtered=filtered, duplicates=dups,
                       near_duplicates=near_dups, skipped_lines=stats.skipped_lines)


def split_corpus(sources: Sequence[str | Path], output_dir: str | Path, *, config: SplitConfig | None = None,
                 field: str = "text", strict: bool = False, overwrite: bool = False) -> dict[str, int]:
    """Write `train.jsonl`, `validation.jsonl`, `test.jsonl` by content hash; returns documents per split."""
    config = config or SplitConfig()
    output_dir = check_output(output_dir, overwrite, inputs=sources)
    texts = read_texts(sources, field=field, strict=strict)
    counts = {name: 0 for name in SPLITS}
    with atomic_dir(output_dir, overwrite=overwrite) as tmp, contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(open(tmp / f"{name}.jsonl", "w", encoding="utf-8")) for name in SPLITS}
        for text in progress(texts, desc="split", unit="doc"):
            name = assign_split(text, config)
            writers[name].write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            counts[name] += 1
        if not sum(counts.values()):
            raise DataError(f"empty corpus: no documents in {', '.join(map(str, sources))}. Check the paths and --field.")
        write_json(tmp / "split_config.json", {**config_to_dict(config), "documents": counts})
    return counts


@dataclasses.dataclass(kw_only=True)
class CorpusStats:
    """Size, Hangul share and document lengths of a corpus."""

    documents: int
    characters: int
    hangul_characters: int
    non_space_characters: int
    lengths: array.array

    @property
    def hangul_share(self) -> float:
        return self.hangul_characters / max(1, self.non_space_characters)

    def percentile(self, q: float) -> int:
        ordered = sorted(self.lengths)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0

    def rows(self) -> list[dict[str, Any]]:
        return [{"documents": self.documents, "characters": self.characters, "Hangul share": round(self.hangul_share, 4),
                 "mean length": round(self.characters / max(1, self.documents), 1), "median length": self.percentile(0.5),
                 "p95 length": self.percentile(0.95), "max length": max(self.lengths, default=0)}]

    def plot(self, path: str | Path) -> Path:
        """A histogram of document lengths (characters, log-spaced bins) as PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        lengths = np.frombuffer(self.lengths, dtype=np.uint32)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        bins = np.unique(np.logspace(0, np.log10(max(2, int(lengths.max(initial=1)) + 1)), 40).astype(int))
        ax.hist(lengths, bins=bins, color="#3b6ea8")
        ax.set_xscale("log")
        ax.set_xlabel("document length (characters)")
        ax.set_ylabel("documents")
        ax.set_title(f"{self.documents:,} documents, Hangul share {100 * self.hangul_share:.1f}%")
        fig.tight_layout()
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        return Path(path)


def corpus_stats(sources: Sequence[str | Path], *, field: str = "text", strict: bool = False) -> CorpusStats:
    """Count documents, characters and Hangul, and collect document lengths."""
    lengths = array.array("I")
    chars = hangul = non_space = 0
    for text in progress(read_texts(sources, field=field, strict=strict), desc="stats", unit="doc"):
        lengths.append(len(text))
        chars += len(text)
        hangul += sum(map(is_hangul, text))
        non_space += len(text) - sum(map(str.isspace, text))
    if not lengths:
        raise DataError(f"empty corpus: no documents in {', '.join(map(str, sources))}. Check the paths and --field.")
    return CorpusStats(documents=len(lengths), characters=chars, hangul_characters=hangul, non_space_characters=non_space, lengths=lengths)

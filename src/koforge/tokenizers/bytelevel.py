"""GPT-2's byte-level alphabet: each of the 256 bytes as one printable character.

Byte-level BPE vocabularies (Qwen3, Llama 3, GPT-4o, koforge's own) spell
tokens in this alphabet (e.g. `ìķĪ`); decoding a token to real text, or
building merges by hand, needs the table both ways.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

"""Korean corpora: read, clean, de-duplicate, split, describe and pack.

Modules: `read` (`read_texts`, streaming), `clean` (`CleanConfig`,
`clean_text`, dedup), `split` (content-hash splits), `corpus` (the jobs behind
`koforge data clean | split | stats`), `pack` (`pack_corpus`) and `shards`
(the token shard format the LM trainer reads).
"""
from koforge._utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports("koforge.data", (
    "read:read_texts clean:CleanConfig,clean_text split:SplitConfig corpus:clean_corpus,split_corpus,corpus_stats "
    "pack:PackConfig,pack_corpus"))

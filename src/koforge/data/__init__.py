"""Korean corpora: read, clean, de-duplicate, split, describe and pack.

Modules: `read` (`read_texts`, streaming), `clean` (`CleanConfig`,
`clean_text`, dedup), `split` (content-hash splits), `corpus` (the jobs behind
`koforge data clean | split | stats`), `pack` (`pack_corpus`) and `shards`
(the token shard format the LM trainer reads).
"""

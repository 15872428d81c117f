"""Korean tokenizers: train (byte-level BPE, SuperBPE, SentencePiece), load, evaluate.

Modules: `train` (config + `train_tokenizer`), `bpe` and `sentencepiece`
(backends), `io` (`load_tokenizer`, `save_tokenizer`, `tokenizer_fingerprint`),
`evaluate` (`evaluate_tokenizers`). Their main names are here too, resolved lazily
(this package imports nothing heavy on its own).
"""
from koforge._utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports("koforge.tokenizers", (
    "train:TokenizerTrainConfig,train_tokenizer io:load_tokenizer,save_tokenizer,tokenizer_fingerprint "
    "evaluate:evaluate_tokenizers"))

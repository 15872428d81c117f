"""Korean tokenizers: train (byte-level BPE, SuperBPE, SentencePiece), load, evaluate.

Modules: `train` (config + `train_tokenizer`), `bpe` and `sentencepiece`
(backends), `io` (`load_tokenizer`, `save_tokenizer`, `tokenizer_fingerprint`),
`evaluate` (`evaluate_tokenizers`). Import them directly; this package imports
nothing heavy on its own.
"""

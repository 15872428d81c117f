"""Ctrl-C in the middle of a data or tokenizer job leaves nothing behind: no output, no temporary sibling."""
from __future__ import annotations

import pytest

from koforge.data import corpus, pack
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer


def _interrupted(texts, after: int = 50):
    def gen(*args, **kwargs):
        for i, text in enumerate(texts):
            if i == after:
                raise KeyboardInterrupt
            yield text
    return gen


@pytest.fixture(scope="module")
def texts(assets):
    return (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("job", ["clean", "split", "pack", "bpe", "superbpe"])
def test_interrupt_leaves_nothing(tmp_path, monkeypatch, texts, job):
    out = tmp_path / "sub" / "out"  # a missing parent the job creates must go too
    if job in ("bpe", "superbpe"):
        config = TokenizerTrainConfig(kind=job, vocab_size=300, superbpe_transition=280 if job == "superbpe" else None)
        with pytest.raises(KeyboardInterrupt):
            train_tokenizer(_interrupted(texts)(), config, out)
    else:
        module = pack if job == "pack" else corpus
        monkeypatch.setattr(module, "read_texts", _interrupted(texts))
        run = {"clean": lambda: corpus.clean_corpus(["x"], out.with_suffix(".jsonl")),
               "split": lambda: corpus.split_corpus(["x"], out),
               "pack": lambda: pack.pack_corpus({"train": ["x"]}, _tokenizer(tmp_path, texts), out,
                                                config=pack.PackConfig(batch_size=10))}[job]
        with pytest.raises(KeyboardInterrupt):
            run()
    assert not (tmp_path / "sub").exists(), sorted(p.name for p in (tmp_path / "sub").iterdir())


def _tokenizer(tmp_path, texts):
    return train_tokenizer(texts[:100], TokenizerTrainConfig(vocab_size=300), tmp_path / "tok").path

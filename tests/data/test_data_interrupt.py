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


def test_sigterm_to_the_cli_cleans_up_like_ctrl_c(tmp_path):
    """`timeout`/`kill` send SIGTERM: the console script turns it into Ctrl-C's clean exit (was: a hidden temp file left)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    big = tmp_path / "big.txt"
    big.write_text("한국어 문장 하나입니다 그리고 조금 더 긴 문장입니다.\n" * 2_000_000, encoding="utf-8")
    out = tmp_path / "o"
    out.mkdir()
    env = {**os.environ, "KOFORGE_PROGRESS": "0", "KOFORGE_MLFLOW": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "koforge", "data", "clean", "-i", str(big), "-o", str(out / "c.jsonl")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the temporary output exists: the job is writing
    assert proc.poll() is None, "the job ended before it could be signalled"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "interrupted" in err  # 128 + SIGTERM
    assert list(out.iterdir()) == []

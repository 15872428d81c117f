"""Sliding-window perplexity: every token scored once, parity with the Hugging Face recipe, bits per byte."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compress"))
from compress_models import make_model  # noqa: E402  (the tiny-model builder of the compress tests)

from koforge._utils.errors import DataError
from koforge.compress.calibration import load_texts
from koforge.compress.layout import load_model
from koforge.eval.perplexity import evaluate_perplexity, window_spans

ASSETS = Path(__file__).resolve().parents[1] / "assets"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_and_texts(tmp_path_factory):
    model, tok = load_model(make_model("llama", tmp_path_factory.mktemp("ppl") / "m", seed=3))
    return model, tok, load_texts(ASSETS / "compress_ko.txt", max_docs=12)


@pytest.mark.parametrize("n,context,stride", [(1, 4, 2), (2, 4, 4), (10, 4, 1), (37, 8, 3), (64, 16, 16), (65, 16, 5)])
def test_windows_score_each_token_once(n, context, stride):
    spans = window_spans(n, context, stride)
    scored = [t for b, e, first in spans for t in range(first, e)]
    if stride < context:
        assert scored == list(range(1, n))
    else:  # as in the HF recipe, a window's first token has no context there and is not scored
        assert scored == [t for t in range(1, n) if t % stride]
    assert all(e - b <= context and first > b for b, e, first in window_spans(n, context, stride))


def hf_recipe_nll(model, ids, context, stride):
    """The recipe of the transformers 'Perplexity of fixed-length models' page, summed NLL and token count."""
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, ids.size(1), stride):
        end = min(begin + context, ids.size(1))
        trg_len = end - prev_end
        inputs = ids[:, begin:end]
        targets = inputs.clone()
        targets[:, :-trg_len] = -100
        with torch.inference_mode():
            loss = model(input_ids=inputs, labels=targets).loss
        valid = int((targets[:, 1:] != -100).sum())
        nll += float(loss) * valid
        count += valid
        prev_end = end
        if end == ids.size(1):
            break
    return nll, count


def test_matches_the_hugging_face_recipe(model_and_texts):
    model, tok, texts = model_and_texts
    texts = texts[:3]
    res = evaluate_perplexity(model, tok, texts, context=48, stride=20, batch_size=3)
    ids = torch.tensor([[tok.bos_token_id] + tok("\n\n".join(texts), add_special_tokens=False)["input_ids"]])
    nll, count = hf_recipe_nll(model, ids, 48, 20)
    assert res["tokens"] == count == ids.size(1) - 1
    assert math.isclose(res["nll"], nll / count, rel_tol=1e-5), (res["nll"], nll / count)
    assert math.isclose(res["bits_per_byte"], nll / (math.log(2) * len("\n\n".join(texts).encode())), rel_tol=1e-5)


def test_batch_size_does_not_change_the_figure(model_and_texts):
    model, tok, texts = model_and_texts
    a = evaluate_perplexity(model, tok, texts[:2], context=32, stride=16, batch_size=1)
    b = evaluate_perplexity(model, tok, texts[:2], context=32, stride=16, batch_size=7)
    assert math.isclose(a["perplexity"], b["perplexity"], rel_tol=1e-6)


def test_single_window_equals_the_model_loss(model_and_texts):
    model, tok, texts = model_and_texts
    res = evaluate_perplexity(model, tok, texts[:1], context=4096, stride=4096, add_bos=False)
    ids = tok(texts[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        loss = float(model(input_ids=ids, labels=ids).loss)
    assert math.isclose(res["perplexity"], math.exp(loss), rel_tol=1e-5)


def test_empty_text_is_a_clear_error(model_and_texts):
    model, tok, _ = model_and_texts
    with pytest.raises(DataError, match="no non-empty text"):
        evaluate_perplexity(model, tok, ["", "  "], context=8, stride=4)


def test_one_string_and_windows_past_the_positions_are_refused(model_and_texts):
    model, tok, texts = model_and_texts
    with pytest.raises(DataError, match="a list of texts"):
        evaluate_perplexity(model, tok, texts[0], context=8, stride=4)
    with pytest.raises(DataError, match="a loaded model and tokenizer"):
        evaluate_perplexity(model, "path/to/tokenizer", texts, context=8, stride=4)
    long = [" ".join(texts)] * 4  # more tokens than the 512 positions
    with pytest.raises(DataError, match=r"context 1024 is longer than the model can attend to "
                                        r"\(max_position_embeddings=512\)"):
        evaluate_perplexity(model, tok, long, context=1024, stride=512)


def test_a_diverged_model_gets_an_infinite_perplexity_not_an_overflow(model_and_texts):
    """A broken model (a diverged run, a destroyed compression) can lose > 709 nats per token: math.exp raised
    OverflowError instead of giving perplexity inf (stored as null) beside its finite NLL and bits per byte."""
    import copy

    model, tok, texts = model_and_texts
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.get_output_embeddings().weight.mul_(1e5)
    res = evaluate_perplexity(broken, tok, texts[:2], context=16, stride=8)
    assert res["nll"] > 709 and math.isfinite(res["bits_per_byte"])
    assert res["perplexity"] == math.inf

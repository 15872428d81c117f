"""Pooling (last-token with left and right padding), fast encoder parity, GradCache parity, saved tokenizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from koforge.embeddings.encode import FastEncoder
from koforge.embeddings.model import EmbeddingModelConfig, build_embedding_model
from tokenizer_folders import assert_portable, assert_same_tokenizer

TEXTS = ["한 남자가 기타를 치고 있다.", "고양이", "여자가 부엌에서 아주 맛있는 요리를 하고 있다."]


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_ignores_padding(tiny_decoder, side):
    model = build_embedding_model(tiny_decoder, EmbeddingModelConfig(pooling="lasttoken"))
    model.tokenizer.padding_side = side
    batched = model.encode(TEXTS, batch_size=3, convert_to_numpy=True)
    alone = np.stack([model.encode([t], convert_to_numpy=True)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5, err_msg=f"padding side {side}")


def test_fast_encoder_matches_sentence_transformer(tiny_bert):
    model = build_embedding_model(tiny_bert)
    ref = model.encode(TEXTS * 3, batch_size=4, convert_to_numpy=True)
    got = FastEncoder(model, batch_size=4).encode(TEXTS * 3)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert got.dtype == np.float32
    one = FastEncoder(model).encode(TEXTS[0])  # one sentence, one vector, as SentenceTransformer.encode
    assert one.shape == model.encode(TEXTS[0]).shape == (model.get_embedding_dimension(),)
    np.testing.assert_allclose(one, ref[0], atol=1e-5)


def test_decoder_with_chat_template_reads_plain_text_everywhere(tiny_decoder, tmp_path):
    """sentence-transformers >= 6 renders texts through a tokenizer's chat template unless the module is
    pinned to plain text: koforge pins it, so training, koforge's encoder and a plain
    SentenceTransformer(path) of the saved model all embed the same tokens."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from koforge.embeddings.model import load_embedder, save_embedding_model

    chatty = tmp_path / "chatty"
    import shutil

    shutil.copytree(tiny_decoder, chatty)
    tok = AutoTokenizer.from_pretrained(str(chatty))
    tok.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    tok.save_pretrained(str(chatty))
    model = build_embedding_model(chatty, EmbeddingModelConfig(pooling="lasttoken"))
    assert "message" not in model[0].modality_config
    plain = model.tokenizer(TEXTS[0])["input_ids"]
    assert model.preprocess([TEXTS[0]])["input_ids"][0].tolist() == plain  # no template tokens around the text
    ref = model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(FastEncoder(model).encode(TEXTS), ref, atol=1e-5)
    save_embedding_model(model, tmp_path / "saved")
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "saved")).encode(TEXTS, convert_to_numpy=True), ref, atol=1e-5)
    np.testing.assert_allclose(load_embedder(tmp_path / "saved").encode(TEXTS), ref, atol=1e-5)


def test_fast_encoder_defers_to_sentence_transformer_for_chat_messages(tiny_decoder, tmp_path):
    """A folder saved with the message modality (texts through the chat template) encodes as ST does."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_decoder))
    tok.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    word = Transformer(str(tiny_decoder), processor_kwargs={"chat_template": tok.chat_template})
    word.tokenizer.chat_template = tok.chat_template
    st = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), pooling_mode="lasttoken"), Normalize()])
    if "message" not in word.modality_config:
        pytest.skip("this sentence-transformers does not render plain texts through chat templates")
    st.tokenizer.pad_token = st.tokenizer.pad_token or st.tokenizer.eos_token
    np.testing.assert_allclose(FastEncoder(st).encode(TEXTS), st.encode(TEXTS, convert_to_numpy=True), atol=1e-5)


def test_saved_model_tokenizer_loads_in_transformers_4_and_5_unchanged(tiny_bert, tmp_path):
    """Saved by sentence-transformers under transformers 5 the class is BertTokenizer, whose 4.x fast class resets the
    normalizer when the config's flags disagree with it (TokenizersBackend, for a generic tokenizer, 4.x cannot load)."""
    from sentence_transformers import SentenceTransformer

    from koforge.embeddings.model import save_embedding_model

    model = build_embedding_model(tiny_bert)
    model.save(str(tmp_path / "plain"))
    save_embedding_model(model, tmp_path / "saved")
    assert_portable(tmp_path / "saved")
    assert_same_tokenizer(tmp_path / "plain", tmp_path / "saved", TEXTS)
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "saved"), device="cpu").encode(TEXTS, convert_to_numpy=True),
                               model.encode(TEXTS, convert_to_numpy=True), atol=1e-5)


def test_query_prompt_is_stored(tiny_bert):
    model = build_embedding_model(tiny_bert, EmbeddingModelConfig(query_prompt="query: "))
    assert model.prompts["query"] == "query: "


def test_gradcache_equals_plain_infonce_loss_and_gradients(tiny_bert):
    from koforge.embeddings.losses import build_loss

    anchors = ["남자가 기타를 친다.", "여자가 요리한다.", "개가 달린다.", "아이가 웃는다."]
    positives = ["한 남자가 기타를 연주한다.", "여자가 음식을 만든다.", "강아지가 뛴다.", "아이가 미소짓는다."]
    results = []
    for mini in (None, 2):
        model = build_embedding_model(tiny_bert).eval()  # no dropout: both paths see the same function
        loss_fn = build_loss("infonce", model, temperature=0.05, mini_batch_size=mini)
        feats = [model.preprocess(anchors), model.preprocess(positives)]
        loss = loss_fn(feats, None)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (l1, g1), (l2, g2) = results
    assert torch.allclose(l1, l2, atol=1e-5), f"loss {l1} vs {l2}"
    assert g1.keys() == g2.keys()
    worst = max((g1[k] - g2[k]).abs().max().item() for k in g1)
    assert worst < 1e-4, f"max grad diff {worst}"


def test_saved_model_encodes_the_same_in_koforge_and_sentence_transformers(tiny_bert, tmp_path):
    """Truncation at max_length, an empty text and length-sorted batches of 2: the saved folder embeds alike in both."""
    from sentence_transformers import SentenceTransformer

    from koforge.embeddings.model import load_embedder, save_embedding_model

    texts = ["", "한 남자가 기타를 친다. " * 20, *TEXTS, "  앞뒤 공백  "]
    save_embedding_model(build_embedding_model(tiny_bert, EmbeddingModelConfig(max_length=8)), tmp_path / "saved")
    st = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    ours = load_embedder(tmp_path / "saved", batch_size=2)
    assert st.max_seq_length == ours.model.max_seq_length == 8
    ref = st.encode(texts, batch_size=2, convert_to_numpy=True)
    got = ours.encode(texts)
    assert np.abs(got - ref).max() <= 1e-6, f"max diff {np.abs(got - ref).max()}"
    np.testing.assert_allclose(ours.encode(texts, prompt="질문: "), st.encode(texts, prompt="질문: "), atol=1e-6)


def test_fast_encoder_honours_prompt_names_and_options_as_sentence_transformer_does(tiny_bert):
    """prompt_name, the model's default prompt, normalize_embeddings and truncate_dim were silently ignored."""
    from koforge._utils.errors import ConfigError

    model = build_embedding_model(tiny_bert, EmbeddingModelConfig(normalize=False, query_prompt="질문과 상관없는 긴 접두사: "))
    fast = FastEncoder(model, batch_size=2)
    ref = model.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    assert not np.allclose(ref, model.encode(TEXTS, convert_to_numpy=True))  # the prompt moves the embedding
    np.testing.assert_allclose(fast.encode(TEXTS, prompt_name="query"), ref, atol=1e-6)
    np.testing.assert_allclose(fast.encode(TEXTS, normalize_embeddings=True),
                               model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True), atol=1e-6)
    np.testing.assert_allclose(fast.encode(TEXTS, truncate_dim=8), model.encode(TEXTS, truncate_dim=8), atol=1e-6)
    assert fast.encode(TEXTS, truncate_dim=8).shape == (3, 8)
    model.default_prompt_name = "query"
    np.testing.assert_allclose(fast.encode(TEXTS), model.encode(TEXTS, convert_to_numpy=True), atol=1e-6)
    np.testing.assert_allclose(fast.encode(TEXTS), ref, atol=1e-6)
    with pytest.raises(ConfigError, match=rf"prompt_name 'passage' is not one of the model's prompts \({', '.join(model.prompts)}\)"):
        fast.encode(TEXTS, prompt_name="passage")


def test_teacher_cache_is_reused_only_for_the_same_teacher_weights(tiny_bert, tmp_path, korean_texts):
    """A teacher retrained at the same path must not hand back the old teacher's cached embeddings."""
    import shutil

    from transformers import BertModel

    from koforge.embeddings.teacher import teacher_embeddings

    teacher, cache = tmp_path / "teacher", tmp_path / "cache" / "t.npy"
    shutil.copytree(tiny_bert, teacher)
    first = teacher_embeddings(str(teacher), korean_texts[:4], cache)
    assert np.array_equal(teacher_embeddings(str(teacher), korean_texts[:4], cache), first)
    assert len(list(cache.parent.iterdir())) == 1  # the second call read the cache
    model = BertModel.from_pretrained(str(teacher))
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(2.0)
    model.save_pretrained(str(teacher))  # the same folder, other weights
    second = teacher_embeddings(str(teacher), korean_texts[:4], cache)
    assert not np.allclose(second, first) and len(list(cache.parent.iterdir())) == 2


def test_hub_sentence_transformer_keeps_its_own_modules(tiny_bert, fake_hub):
    """A hub name of a sentence-transformers repo (served here from a local HF cache, hub off) loads as that
    model, CLS pooling and no Normalize, not as a bare backbone under koforge's mean pooling."""
    from sentence_transformers import SentenceTransformer

    from koforge._utils.errors import ModelLoadError

    snapshot = fake_hub("koforge-test/tiny-st")
    build_embedding_model(tiny_bert, EmbeddingModelConfig(pooling="cls", normalize=False)).save(str(snapshot))
    loaded = build_embedding_model("koforge-test/tiny-st")
    assert len(loaded) == 2 and loaded[1].get_config_dict()["pooling_mode"] == "cls"
    expected = SentenceTransformer(str(snapshot), device="cpu").encode(TEXTS)
    assert np.allclose(loaded.encode(TEXTS), expected, atol=1e-6)
    with pytest.raises(ModelLoadError, match="'koforge-test/absent' not found.*not in the Hugging Face cache either, and "
                                             "the hub is off"):  # at once, no retries of an unreachable hub
        build_embedding_model("koforge-test/absent")


def test_a_missing_local_path_is_not_taken_for_a_hub_name(tmp_path, monkeypatch):
    from koforge._utils.errors import InputPathError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputPathError, match=r"embedding model './nomodel' not found: there is no file or folder"):
        build_embedding_model("./nomodel")


def test_distill_teacher_embeds_the_text_the_student_sees(assets, tiny_bert, tiny_expanded, tmp_path, korean_texts,
                                                          monkeypatch):
    """A stage's max_length cuts the student's inputs; the teacher gets the same span of text (its tokenizer
    splits Korean differently, so one token count would give it another span), read to its own limit."""
    from koforge.embeddings import recipe as recipe_mod
    from koforge.embeddings.model import build_embedding_model
    from koforge.embeddings.teacher import student_visible_texts

    long_text = " ".join(korean_texts[:6])
    texts = [long_text, "비행기", "  한 남자  "]  # the last two fit in 12 tokens of jamo
    student = build_embedding_model(tiny_expanded)
    tok = student.tokenizer
    visible = student_visible_texts(tok, texts, 12)
    assert long_text.startswith(visible[0]) and len(visible[0]) < len(long_text)
    # The cut text starts with every token the student trains on ([SEP] aside) and ends at the character the
    # last one came from (this tokenizer splits a syllable into jamo); short texts (spaces and all) stay whole.
    seen_ids = tok(long_text, truncation=True, max_length=12)["input_ids"][:-1]
    assert tok(visible[0])["input_ids"][:11] == seen_ids
    assert tok(visible[0][:-1])["input_ids"][:-1] != seen_ids and visible[1:] == texts[1:]

    seen = {}

    def spy(teacher, texts, cache_path, **kwargs):
        seen.update(texts=list(texts), **kwargs)
        return np.zeros((len(texts), student.get_embedding_dimension()), dtype=np.float32)

    monkeypatch.setattr(recipe_mod, "teacher_embeddings", spy)
    data = tmp_path / "long.txt"
    data.write_text("\n".join([long_text, korean_texts[0]]) + "\n", encoding="utf-8")
    recipe = recipe_mod.load_recipe({"name": "t", "data_root": str(assets), "device": "cpu", "evaluate_base": False,
                                     "evaluation": {"korsts": None, "korquad": None, "separation": None,
                                                    "bitext_ko": None, "bitext_en": None},
                                     "stages": [{"name": "rows", "scope": "new_embeddings", "objective": "distill",
                                                 "teacher": str(tiny_bert), "max_length": 12, "max_steps": 1,
                                                 "batch_size": 2, "data": [{"kind": "text", "path": str(data)}]}]})
    recipe_mod.run_recipe(recipe, tiny_expanded, tmp_path / "run")
    assert sorted(seen["texts"]) == sorted(student_visible_texts(tok, [long_text, korean_texts[0]], 12))
    assert seen.get("max_length") is None


def test_pooling_and_normalize_given_replace_a_sentence_transformer_folders_own(tiny_bert, tmp_path):
    """They used to be ignored for a sentence-transformers folder; None keeps the folder's own."""
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    from koforge.embeddings.model import EmbeddingModelConfig

    build_embedding_model(tiny_bert).save(str(tmp_path / "st"))  # mean pooling + Normalize
    kept = build_embedding_model(tmp_path / "st")
    assert [type(m).__name__ for m in kept] == ["Transformer", "Pooling", "Normalize"] and kept[1].pooling_mode == "mean"
    cls = build_embedding_model(tmp_path / "st", EmbeddingModelConfig(pooling="cls", normalize=False))
    assert [type(m).__name__ for m in cls] == ["Transformer", "Pooling"] and cls[1].pooling_mode == "cls"
    with torch.no_grad():
        features = cls[0](cls.preprocess(TEXTS[:2]))
    np.testing.assert_allclose(cls.encode(TEXTS[:2]), features["token_embeddings"][:, 0].numpy(), atol=1e-5)
    again = build_embedding_model(tmp_path / "st", EmbeddingModelConfig(normalize=True))
    assert sum(isinstance(m, Normalize) for m in again) == 1 and isinstance(again[1], Pooling)
    cls.save(str(tmp_path / "cls"))  # the replaced head is what gets saved
    assert build_embedding_model(tmp_path / "cls")[1].pooling_mode == "cls"


@pytest.mark.parametrize("objective", ["cosent", "angle"])
def test_cosent_and_angle_take_the_stage_temperature_as_scale(tiny_bert, objective):
    """A stage's temperature was silently ignored for CoSENT/AnglE (always scale 20): scale = 1/temperature, as for
    InfoNCE, so the default 0.05 keeps sentence-transformers' 20."""
    from koforge.embeddings.losses import build_loss

    model = build_embedding_model(tiny_bert)
    assert build_loss(objective, model).scale == pytest.approx(20.0)
    assert build_loss(objective, model, temperature=0.1).scale == pytest.approx(10.0)


def test_corrupted_weights_or_a_file_as_the_model_are_one_message(tiny_bert, tmp_path):
    """A truncated model.safetensors raised safetensors' own error through `embed train` / `embed eval` (a
    traceback); a file given as the model was read as its config.json ("not valid JSON") after hub retries."""
    from checkpoint_edits import truncated_copy

    from koforge._utils.errors import ModelLoadError

    broken = truncated_copy(tiny_bert, tmp_path / "broken")
    with pytest.raises(ModelLoadError, match="safetensors file is corrupted or truncated. Re-download or re-save"):
        build_embedding_model(broken)
    notes = tmp_path / "notes.txt"
    notes.write_text("첫 줄: 모델이 아님\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"'.*notes.txt' is a file, not a model folder"):
        build_embedding_model(notes)
    with pytest.raises(ModelLoadError, match=r"the folder it is in: '.*broken'"):
        build_embedding_model(broken / "model.safetensors")


def test_a_folder_without_a_model_is_named_as_such(tmp_path):
    """A tokenizer folder given as the backbone got transformers' "Should have a model_type key in its
    config.json", about a config.json that does not exist."""
    from koforge._utils.errors import ModelLoadError

    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="neither modules.json nor config.json.*tokenizer folder"):
        build_embedding_model(tok)

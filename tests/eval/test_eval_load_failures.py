"""koforge eval refuses what it cannot evaluate in one message, before writing anything.

Each test names one way a user's input goes wrong (corrupted weights, a data
file in cp949, an encoder given to perplexity, a mistyped path, a koforge
checkpoint without a tokenizer, a missing data file) and asserts the message's
cause and fix, and that no eval_<task>.json appears.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from char_encoder import CharEncoder

from koforge._utils.errors import ConfigError, DataError, InputPathError, ModelLoadError
from koforge.eval import runner
from koforge.eval.runner import EvalConfig, run_eval

CP949_LINE = "한국어 문장".encode("cp949")


def _no_model_load(*_, **__):
    raise AssertionError("the model was loaded before the data was checked")


def _copy(folder: Path, dest: Path, keep=lambda name: True) -> Path:
    dest.mkdir()
    for f in folder.iterdir():
        if keep(f.name):
            shutil.copy(f, dest / f.name)
    return dest


# --- 1. corrupted weights ------------------------------------------------------------------------------------

def test_truncated_safetensors_of_a_causal_lm_is_one_message(tiny_llama, tmp_path):
    bad = _copy(tiny_llama, tmp_path / "corrupt")
    (bad / "model.safetensors").write_bytes((tiny_llama / "model.safetensors").read_bytes()[:1000])
    out = tmp_path / "ev"
    with pytest.raises(ModelLoadError, match="weights of .*corrupt.* cannot be read .*corrupted or truncated.*Re-download"):
        run_eval(EvalConfig(task="perplexity", model=str(bad), context=32, stride=16, device="cpu"), out)
    assert not out.exists()


def test_garbage_safetensors_of_an_embedding_model_is_one_message(tmp_path):
    from transformers import BertConfig

    bad = tmp_path / "corrupt_bert"
    BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
               num_attention_heads=4).save_pretrained(bad)
    (bad / "model.safetensors").write_text("garbage\n")
    out = tmp_path / "ev"
    with pytest.raises(ModelLoadError, match="corrupt_bert.* cannot be read .*corrupted or truncated"):
        run_eval(EvalConfig(task="korsts", model=str(bad), device="cpu"), out)
    assert not out.exists()


def test_a_folder_without_weights_or_with_a_broken_config_says_what_to_restore(tiny_llama, tmp_path):
    from koforge.cli.main import app

    no_weights = _copy(tiny_llama, tmp_path / "no_weights", keep=lambda n: n != "model.safetensors")
    broken = _copy(tiny_llama, tmp_path / "broken")
    (broken / "config.json").write_text((tiny_llama / "config.json").read_text()[:40])
    for folder, message in ((no_weights, "the folder holds no weights (no model.safetensors or pytorch_model.bin beside "
                                         "config.json). Copy or re-download them"),
                            (broken, "its config.json is not valid JSON (truncated or edited by hand). Restore it")):
        for args in (["eval", "perplexity", str(folder), "--context", "64", "--stride", "32"],
                     ["compress", "analyze", str(folder)]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
            assert ".." not in result.output


# --- 2. data files that are not UTF-8 ------------------------------------------------------------------------

def test_cp949_data_files_name_the_file_and_iconv(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "load_embedding_model", lambda name, **kw: CharEncoder())
    tsv = tmp_path / "sts.tsv"
    tsv.write_bytes(b"score\tsentence1\tsentence2\n3.0\t" + CP949_LINE + b"\t" + CP949_LINE + b"\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'{"domain": "d", "text1": "' + CP949_LINE + b'", "text2": "x", "label": 1}\n')
    ko, en = tmp_path / "ko.txt", tmp_path / "en.txt"
    ko.write_bytes(CP949_LINE + b"\n")
    en.write_text("an English line\n", encoding="utf-8")
    out = tmp_path / "ev"
    for task, data, name in (("korsts", [tsv], "sts.tsv"), ("separation", [pairs], "pairs.jsonl"),
                             ("bitext", [ko, en], "ko.txt")):
        with pytest.raises(DataError, match=rf"'[^']*{name}' is not UTF-8 \(line \d+: byte 0x[0-9a-f]+\)\. "
                                            r"Convert it to UTF-8, e\.g\. `iconv -f cp949 -t utf-8"):
            run_eval(EvalConfig(task=task, model="char-bag", data=[str(d) for d in data]), out)
    assert not out.exists()


def test_cp949_text_for_perplexity_says_convert_and_loads_no_model(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "load_causal_lm", _no_model_load)
    text = tmp_path / "heldout.txt"
    text.write_bytes(CP949_LINE + b"\n" + CP949_LINE + b"\n")
    with pytest.raises(DataError, match="heldout.txt.*not UTF-8.*iconv -f cp949 -t utf-8"):
        run_eval(EvalConfig(task="perplexity", model="any", data=[str(text)]), tmp_path / "ev")
    assert not (tmp_path / "ev").exists()


def test_a_utf8_bom_does_not_hide_the_korsts_header(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "load_embedding_model", lambda name, **kw: CharEncoder())
    tsv = tmp_path / "sts.tsv"
    tsv.write_text("\ufeffscore\tsentence1\tsentence2\n1.0\t가나다\t라마바사\n4.0\t가나다\t가나라\n"
                   "2.5\t영화\t영화관\n", encoding="utf-8")
    result, _ = run_eval(EvalConfig(task="korsts", model="char-bag", data=[str(tsv)]), tmp_path / "ev")
    assert result.metrics["n_pairs"] == 3


# --- 3. perplexity on what is not a causal LM ----------------------------------------------------------------

def test_perplexity_refuses_an_encoder(tmp_path):
    from transformers import BertConfig, BertModel

    bert = tmp_path / "tiny_bert"
    BertModel(BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=128)).save_pretrained(bert)
    out = tmp_path / "ev"
    for context, stride in ((256, 128), (64, 32)):  # longer than BERT's positions, and within them
        with pytest.raises(ModelLoadError, match=r"tiny_bert' is an encoder \(BertModel\); perplexity needs a causal LM"):
            run_eval(EvalConfig(task="perplexity", model=str(bert), context=context, stride=stride, device="cpu"), out)
    assert not out.exists()


def test_korsts_refuses_a_plain_causal_lm_but_not_one_with_an_embedding_layout(tiny_llama, tmp_path):
    out = tmp_path / "ev"
    with pytest.raises(ModelLoadError, match=r"is a causal LM \(LlamaForCausalLM\), not a sentence-embedding model.*"
                                             "perplexity, speed, needle or harness task"):
        run_eval(EvalConfig(task="korsts", model=str(tiny_llama), device="cpu"), out)
    assert not out.exists()
    # with modules.json the folder says how it pools (a causal-LM embedder such as Qwen3-Embedding): not refused
    from sentence_transformers import SentenceTransformer, models

    from koforge.eval.loading import load_embedding_model

    body = models.Transformer(str(tiny_llama))
    layout = tmp_path / "llama_embedder"
    SentenceTransformer(modules=[body, models.Pooling(body.get_embedding_dimension(), "lasttoken")]).save(str(layout))
    assert load_embedding_model(str(layout), device="cpu").encode(["한국어 문장"]).shape == (1, body.get_embedding_dimension())


def test_perplexity_refuses_a_checkpoint_missing_its_lm_head(tiny_llama, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    body = tmp_path / "llama_body"
    LlamaModel(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)).save_pretrained(body)
    out = tmp_path / "ev"
    with pytest.raises(ModelLoadError, match=r"llama_body' lacks 1 weights of LlamaForCausalLM \(e\.g\. lm_head\.weight\): "
                                             "it is not a causal LM checkpoint, or it is incomplete"):
        run_eval(EvalConfig(task="perplexity", model=str(body), tokenizer=str(tiny_llama), context=32, stride=16,
                            device="cpu"), out)
    assert not out.exists()


def test_perplexity_refuses_a_context_longer_than_the_positions(tiny_llama, tmp_path):
    out = tmp_path / "ev"
    with pytest.raises(ConfigError, match=r"--context 256 is longer than .* \(max_position_embeddings=128\)\. "
                                          r"Pass --context 128 or less"):
        run_eval(EvalConfig(task="perplexity", model=str(tiny_llama), context=256, stride=128, device="cpu"), out)
    with pytest.raises(ConfigError, match="stride .* must be at most context"):
        EvalConfig(task="perplexity", model=str(tiny_llama), context=64)
    assert not out.exists()


# --- 4. a mistyped local path --------------------------------------------------------------------------------

def test_a_mistyped_path_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    start = time.monotonic()
    for task in ("korsts", "perplexity"):
        with pytest.raises(ModelLoadError, match=r"model 'models/tiny_bret' not found: there is no file or folder "
                                                 r"'.*models/tiny_bret'.*not in the Hugging Face cache"):
            run_eval(EvalConfig(task=task, model="models/tiny_bret"), tmp_path / "ev")
    assert time.monotonic() - start < 30, "the hub look-up should answer at once when offline"
    assert not (tmp_path / "ev").exists()


# --- 5. koforge LM checkpoints and tokenizers ----------------------------------------------------------------

@pytest.fixture(scope="module")
def koforge_run(tiny_llama, tmp_path_factory) -> Path:
    """A `koforge lm train`-style run folder with two checkpoints that record no tokenizer."""
    import torch

    from koforge.lm.checkpoint import save_checkpoint
    from koforge.lm.config import LMConfig
    from koforge.lm.model import KoLM

    vocab = len(json.loads((tiny_llama / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    config = LMConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64)
    run = tmp_path_factory.mktemp("lm_run")
    for step in (1, 2):
        torch.manual_seed(step)
        save_checkpoint(run / "checkpoints", step, KoLM(config), {},
                        {"model_config": config.to_dict(), "tokenizer": None, "eos_id": 1})
    (run / "config.json").write_text(json.dumps({"model": config.to_dict(), "train": {}}), encoding="utf-8")  # as `lm train`
    return run


def test_a_checkpoint_without_tokenizer_asks_for_one(koforge_run, tmp_path):
    out = tmp_path / "ev"
    with pytest.raises(ModelLoadError, match=r"koforge checkpoint '.*step_0000002' records no tokenizer: pass "
                                             r"--tokenizer PATH .*`koforge lm export .* --tokenizer PATH`"):
        run_eval(EvalConfig(task="perplexity", model=str(koforge_run), context=32, stride=16, device="cpu"), out)
    assert not out.exists()


def test_a_run_folder_is_evaluated_at_its_latest_checkpoint_with_the_given_tokenizer(koforge_run, tiny_llama, tmp_path):
    def ppl(model: Path) -> float:
        cfg = EvalConfig(task="perplexity", model=str(model), tokenizer=str(tiny_llama), context=32, stride=16,
                         max_items=20, device="cpu")
        return run_eval(cfg)[0].metrics["perplexity"]

    latest = ppl(koforge_run / "checkpoints" / "step_0000002")
    assert ppl(koforge_run) == pytest.approx(latest, rel=1e-9)
    assert ppl(koforge_run / "checkpoints" / "step_0000001") != pytest.approx(latest, rel=1e-6)


def test_a_model_folder_without_tokenizer_uses_the_tokenizer_option(tiny_llama, tmp_path):
    bare = _copy(tiny_llama, tmp_path / "bare", keep=lambda n: n in ("config.json", "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model folder '.*bare' holds no tokenizer .*--tokenizer PATH"):
        run_eval(EvalConfig(task="perplexity", model=str(bare), context=32, stride=16, device="cpu"), tmp_path / "ev")
    with_tok, _ = run_eval(EvalConfig(task="perplexity", model=str(bare), tokenizer=str(tiny_llama), context=32,
                                      stride=16, max_items=20, device="cpu"))
    own, _ = run_eval(EvalConfig(task="perplexity", model=str(tiny_llama), context=32, stride=16, max_items=20,
                                 device="cpu"))
    assert with_tok.metrics["perplexity"] == pytest.approx(own.metrics["perplexity"], rel=1e-9)
    with pytest.raises(ConfigError, match="--tokenizer.*perplexity and speed only"):
        EvalConfig(task="korsts", model="m", tokenizer=str(tiny_llama))


def test_a_tokenizer_with_ids_past_the_embedding_table_is_one_message(tiny_llama, tmp_path):
    """Another model's tokenizer (here a 2,000-token one for a ~300-row model): named, not torch's IndexError."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    big = Tokenizer(models.BPE(unk_token="<unk>"))
    big.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    big.train_from_iterator(["영화가 정말 재미있었어요 배우들의 연기가 훌륭했다"] * 50,
                            trainers.BpeTrainer(vocab_size=2000, special_tokens=[f"<s{i}>" for i in range(1500)] + ["<unk>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    big.save(str(tmp_path / "big.json"))
    data = tmp_path / "heldout.txt"
    data.write_text("영화가 정말 재미있었어요\n" * 4, encoding="utf-8")
    for task in ("perplexity", "speed"):
        with pytest.raises(DataError, match=r"encodes to token id \d{4}, but the model has \d+ embedding rows .* the "
                                            r"tokenizer is not the model's"):
            run_eval(EvalConfig(task=task, model=str(tiny_llama), tokenizer=str(tmp_path / "big.json"), data=[str(data)],
                                context=32, stride=16, device="cpu", new_tokens=2, repeats=1), tmp_path / "ev")
    assert not (tmp_path / "ev").exists()


def test_cli_checkpoint_without_tokenizer_is_one_red_line(koforge_run, tiny_llama, tmp_path):
    from koforge.cli.main import app

    cli = CliRunner()
    res = cli.invoke(app, ["eval", "perplexity", str(koforge_run), "--context", "32", "--stride", "16",
                           "-o", str(tmp_path / "e")])
    assert res.exit_code == 1 and "records no tokenizer" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "e").exists()
    res = cli.invoke(app, ["eval", "perplexity", str(koforge_run), "--tokenizer", str(tiny_llama), "--context", "32",
                           "--stride", "16", "-n", "10", "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "e" / "eval_perplexity.json").exists()


# --- 6. data paths are checked before the model loads --------------------------------------------------------

def test_missing_data_fails_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "load_embedding_model", _no_model_load)
    monkeypatch.setattr(runner, "load_causal_lm", _no_model_load)
    missing = str(tmp_path / "nothere.tsv")
    out = tmp_path / "ev"
    for task, data in (("korsts", [missing]), ("separation", [missing]), ("bitext", [missing, missing]),
                       ("retrieval", [missing]), ("perplexity", [missing]), ("speed", [missing])):
        with pytest.raises(InputPathError, match="nothere.tsv"):
            run_eval(EvalConfig(task=task, model="some/model", data=data), out)
    monkeypatch.setenv("KOFORGE_SHARED", str(tmp_path))  # no korsts/ there
    with pytest.raises(InputPathError, match="KorSTS split 'dev' not found"):
        run_eval(EvalConfig(task="korsts", model="some/model", data=["dev"]), out)
    assert not out.exists()


# --- 7. a model that ships its own code ----------------------------------------------------------------------

DONOR = Path(__file__).resolve().parents[1] / "assets" / "compress_tokenizer.json"
CUSTOM_CODE = ("from transformers import LlamaConfig, LlamaForCausalLM\n"
               "class CustomLlamaConfig(LlamaConfig):\n    model_type = 'custom_llama'\n"
               "class CustomLlamaForCausalLM(LlamaForCausalLM):\n    config_class = CustomLlamaConfig\n")


@pytest.fixture()
def custom_code_llama(tiny_llama, tmp_path) -> Path:
    """tiny_llama's weights under a model type of its own, defined by a .py file in the folder (auto_map)."""
    folder = _copy(tiny_llama, tmp_path / "custom_llama")
    (folder / "custom_llama.py").write_text(CUSTOM_CODE)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom_llama", architectures=["CustomLlamaForCausalLM"],
                  auto_map={"AutoConfig": "custom_llama.CustomLlamaConfig",
                            "AutoModelForCausalLM": "custom_llama.CustomLlamaForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_custom_code_runs_only_with_the_flag_and_every_refusal_names_it(custom_code_llama, tiny_llama, tmp_path,
                                                                        monkeypatch):
    from koforge.cli.main import app

    monkeypatch.setenv("KOFORGE_MLFLOW", "off")
    data = tmp_path / "heldout.txt"
    data.write_text("\n".join(["영화가 정말 재미있었어요 배우들의 연기가 훌륭했다"] * 4), encoding="utf-8")
    model, out = str(custom_code_llama), tmp_path / "out"
    for args in (["eval", "perplexity", model, "--data", str(data), "--context", "16", "--stride", "8", "-o", str(out)],
                 ["compress", "analyze", model],
                 ["compress", "baseline", model, "--texts", str(data), "--out", str(out / "b.json"), "--no-mlflow"],
                 ["expand", "apply", model, str(DONOR), str(out)],
                 ["embed", "eval", model]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert "ships its own modelling code" in result.output and "--trust-remote-code" in result.output, args
        assert "Traceback" not in result.output and not out.exists(), args

    # With the flag the same weights load through the folder's class and measure what the plain model does.
    for name, folder in (("custom", custom_code_llama), ("plain", tiny_llama)):
        args = ["eval", "perplexity", str(folder), "--data", str(data), "--context", "16", "--stride", "8", "-o", str(tmp_path / name)]
        result = CliRunner().invoke(app, args + (["--trust-remote-code"] if name == "custom" else []))
        assert result.exit_code == 0, result.output
    custom, plain = (json.loads((tmp_path / n / "eval_perplexity.json").read_text()) for n in ("custom", "plain"))
    assert custom["metrics"]["perplexity"] == plain["metrics"]["perplexity"]

    # compress reads the config with the flag, then says it does not know the architecture.
    result = CliRunner().invoke(app, ["compress", "analyze", model, "--trust-remote-code"])
    assert result.exit_code == 1 and "model type 'custom_llama'" in result.output and "not supported" in result.output

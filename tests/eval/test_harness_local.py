"""lm-evaluation-harness glue on a local task: its accuracy equals a direct log-likelihood comparison."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install 'koforge[harness]')")

from koforge._utils.errors import ConfigError  # noqa: E402
from koforge.eval.harness import HarnessConfig, run_harness  # noqa: E402

QUESTIONS = ["서울은 한국의 수도인가?", "부산은 바다 옆에 있나?", "한강은 서울을 지나는가?", "제주도는 섬인가?",
             "김치는 한국 음식인가?", "여름은 추운가?", "고양이는 새인가?", "겨울에 눈이 오나?"]
CHOICES = ["예", "아니오", "모름"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("harness")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(QUESTIONS + CHOICES, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    model.save_pretrained(root / "model")
    fast.save_pretrained(root / "model")
    tasks = root / "tasks"
    tasks.mkdir()
    docs = [{"question": q, "choices": CHOICES, "label": i % 3} for i, q in enumerate(QUESTIONS)]
    (tasks / "data.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n", encoding="utf-8")
    (tasks / "ko_tiny.yaml").write_text(
        "task: koforge_tiny_ko\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tasks / 'data.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}} 답:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n",
        encoding="utf-8")
    return root, docs


def _direct_accuracy(folder: Path, docs: list[dict]) -> float:
    """Pick the choice with the highest summed log-probability after 'question 답:' + ' ' (the harness's rule)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    correct = 0
    for d in docs:
        context = f"{d['question']} 답:"
        scores = []
        for choice in d["choices"]:
            ctx_ids = tok(context, add_special_tokens=False)["input_ids"]
            whole = tok(context + " " + choice, add_special_tokens=False)["input_ids"]
            cont = whole[len(ctx_ids):]
            assert whole[:len(ctx_ids)] == ctx_ids
            ids = torch.tensor([ctx_ids + cont])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
            positions = range(len(ctx_ids) - 1, len(ctx_ids) - 1 + len(cont))
            scores.append(sum(float(logp[p, t]) for p, t in zip(positions, cont)))
        correct += int(max(range(len(scores)), key=scores.__getitem__) == d["label"])
    return correct / len(docs)


def test_local_task_accuracy_equals_direct_loglikelihood(setup):
    root, docs = setup
    res = run_harness(str(root / "model"), HarnessConfig(tasks=["koforge_tiny_ko"], include_path=str(root / "tasks"),
                                                         include_defaults=False, device="cpu", batch_size=4))
    expected = _direct_accuracy(root / "model", docs)
    assert res.metrics["koforge_tiny_ko.acc"] == pytest.approx(expected, abs=1e-12)
    assert res.metrics["score"] == res.metrics["koforge_tiny_ko.acc"]
    assert res.rows[0]["n"] == len(docs) and res.rows[0]["metric"] == "acc"


def test_unknown_task_and_cli(setup, tmp_path):
    from koforge.cli.main import app
    from koforge.eval.schema import read_result

    root, _ = setup
    with pytest.raises(ConfigError, match="koforge_tiny_kx.*did you mean koforge_tiny_ko"):
        run_harness(str(root / "model"), HarnessConfig(tasks=["koforge_tiny_kx"], include_path=str(root / "tasks"),
                                                       include_defaults=False))
    res = CliRunner().invoke(app, ["eval", "harness", str(root / "model"), "-t", "koforge_tiny_ko", "--include-path",
                                   str(root / "tasks"), "--no-builtin-tasks", "--device", "cpu", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    result = read_result(tmp_path / "eval_harness.json")
    assert result.primary_metric == "score" and result.tables["tasks"][0]["task"] == "koforge_tiny_ko"

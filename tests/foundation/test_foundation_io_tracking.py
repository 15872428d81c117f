"""Foundation: atomic outputs (nothing half-written, modes, refusal), typed config errors, CLI errors and logging, MLflow glue."""
from __future__ import annotations

import dataclasses
import logging
import os
import stat
from typing import Optional

import pytest
from typer.testing import CliRunner

from koforge._utils.errors import ConfigError, OutputExistsError, OutputPathError
from koforge._utils.io import atomic_dir, atomic_file, check_output
from koforge.cli.main import app
from koforge.config import load_config
from koforge.tracking.mlflow_run import TrackedRun, tracked_run


def test_atomic_dir_leaves_nothing_on_failure_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "a.txt").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with atomic_dir(out):
            pass
    (tmp_path / "runs").mkdir()
    for make in (atomic_dir, atomic_file):  # parent folders the failed write created go too, existing ones stay
        with pytest.raises(RuntimeError):
            with make(tmp_path / "runs" / "2026-11-24_x" / "job" / "out"):
                raise RuntimeError("interrupted")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"] and not list((tmp_path / "runs").iterdir())


def test_atomic_outputs_get_umask_modes_not_private_temp_modes(tmp_path):
    import torch
    from safetensors.torch import save_file

    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))  # safetensors 0.8 writes it 0600
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "run.sh").write_text("#!/bin/sh\n")
            os.chmod(tmp / "sub" / "run.sh", 0o700)
        with atomic_file(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    # Every file below a published folder is readable by others, as the umask allows; set bits are kept.
    assert stat.S_IMODE((tmp_path / "d" / "model.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d" / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "d" / "sub" / "run.sh").stat().st_mode) == 0o744


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "existing.jsonl").write_text("{}\n")
    for out in (tmp_path / "existing.jsonl" / "tok", tmp_path / "existing.jsonl" / "a" / "b"):
        with pytest.raises(OutputPathError, match="existing.jsonl' is a file, not a folder"):
            check_output(out, overwrite=False)
        with pytest.raises(OutputPathError, match="is a file"):
            with atomic_dir(out):
                pass
        with pytest.raises(OutputPathError, match="is a file"):
            with atomic_file(out):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.jsonl"]
    assert check_output(tmp_path / "new" / "deeper" / "out", overwrite=False) == tmp_path / "new" / "deeper" / "out"


def test_a_file_output_onto_a_folder_is_refused_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("keep")
    with pytest.raises(OutputPathError, match="'.*d' is a folder, but this output is a file"):
        with atomic_file(tmp_path / "d", overwrite=True) as tmp:
            tmp.write_text("zip bytes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and (tmp_path / "d" / "keep.txt").read_text() == "keep"


def test_an_output_that_is_or_holds_an_input_is_refused_even_with_overwrite(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "eval_korsts.json").write_text("{}")
    with pytest.raises(OutputPathError, match="is the input .*writing it would replace what is being read"):
        check_output(run, overwrite=True, inputs=[run])
    with pytest.raises(OutputPathError, match="'.*runs' holds the input '.*a'"):
        check_output(tmp_path / "runs", overwrite=True, inputs=[run])
    assert check_output(run / "report", overwrite=True, inputs=[run, "org/hub-name"]) == run / "report"
    # A file inside an input folder: a new one may be written, an existing one (what is read) not replaced;
    # a folder inside (a report beside the run's results) may be replaced.
    assert check_output(run / "new.json", overwrite=True, inputs=[run]) == run / "new.json"
    with pytest.raises(OutputPathError, match="'.*eval_korsts.json' is inside the input '.*a'"):
        check_output(run / "eval_korsts.json", overwrite=True, inputs=[run])
    (run / "report").mkdir()
    assert check_output(run / "report", overwrite=True, inputs=[run]) == run / "report"


def test_cli_report_onto_its_run_and_file_outputs_onto_folders_are_refused_before_any_work(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval_korsts.json").write_text('{"task": "korsts", "metrics": {"spearman": 0.5}}')
    res = CliRunner().invoke(app, ["report", str(run), "-o", str(run), "--overwrite"])
    assert res.exit_code == 1 and "is the input" in res.output
    assert sorted(p.name for p in run.iterdir()) == ["eval_korsts.json"]
    corpus = tmp_path / "c.txt"
    corpus.write_text("가나다라마바사\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["data", "clean", "-i", str(corpus), "-o", str(corpus), "--overwrite"])
    assert res.exit_code == 1 and "is the input" in res.output and corpus.read_text(encoding="utf-8") == "가나다라마바사\n"
    res = CliRunner().invoke(app, ["data", "stats", str(corpus), "--json", str(corpus)])  # replaced the corpus
    assert res.exit_code == 1 and "is the input" in res.output and corpus.read_text(encoding="utf-8") == "가나다라마바사\n"
    (tmp_path / "folder").mkdir()
    res = CliRunner().invoke(app, ["data", "stats", str(corpus), "--json", str(tmp_path / "folder")])
    assert res.exit_code == 1 and "is a folder, but this output is a file" in res.output
    assert "koforge data stats" not in res.output  # refused before the corpus was read


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_output_in_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputPathError, match="no write permission"):
            check_output(locked / "out", overwrite=False)
    finally:
        locked.chmod(0o700)


def test_cli_turns_file_system_errors_into_one_line_and_leaves_root_logging_alone(tmp_path, monkeypatch):
    import koforge.data.corpus

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/secret.txt")

    monkeypatch.setattr(koforge.data.corpus, "corpus_stats", refuse)
    (tmp_path / "a.txt").write_text("가\n", encoding="utf-8")
    root_handlers = list(logging.getLogger().handlers)
    r = CliRunner().invoke(app, ["data", "stats", str(tmp_path / "a.txt")])
    assert r.exit_code == 1 and "cannot access '/data/secret.txt': Permission denied" in r.output, r.output
    assert "Traceback" not in r.output
    # a root handler would print every huggingface_hub warning twice (it has its own handler)
    assert logging.getLogger().handlers == root_handlers
    r = CliRunner().invoke(app, ["data", "stats", str(tmp_path / "a.txt"), "--plot", str(tmp_path / "a.txt" / "h.png")])
    assert r.exit_code == 1 and "is a file, not a folder" in r.output  # checked before the corpus is read


@dataclasses.dataclass(kw_only=True)
class _Cfg:
    size: int = 8
    name: str = "x"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"size must be >= 1, got {self.size}")


def test_config_overrides_unknown_keys_and_types():
    assert load_config(_Cfg, {"size": 4}, ["name=y"]) == _Cfg(size=4, name="y")
    with pytest.raises(ConfigError, match="'sise'.*Valid keys of _Cfg: size, name"):
        load_config(_Cfg, None, ["sise=3"])
    with pytest.raises(ConfigError, match="'size'"):
        load_config(_Cfg, None, ["size=big"])
    with pytest.raises(ConfigError, match="size must be >= 1"):
        load_config(_Cfg, None, ["size=0"])
    with pytest.raises(ConfigError, match=r"override 'size' is not of the form key=value \(e.g. size=8\)"):
        load_config(_Cfg, None, ["size"])
    with pytest.raises(ConfigError, match=r"override 'name=\[가-힣\]\+': the value is not valid YAML; quote it"):
        load_config(_Cfg, None, ["name=[가-힣]+"])
    assert load_config(_Cfg, None, ['name="[가-힣]+"', "size=2", "size=3"]) == _Cfg(size=3, name="[가-힣]+")


def test_a_text_field_keeps_the_override_as_typed():
    """YAML reads yes/off as booleans, 0.10 as 0.1 and 007 as 7: a split salt "yes" became "True", "0.10" the same
    salt as "0.1". A text field now keeps what was typed; other fields still convert, null is still None."""
    from koforge.data.clean import CleanConfig
    from koforge.data.split import SplitConfig

    for typed in ("yes", "off", "0.10", "007", "1e3", "True"):
        assert load_config(SplitConfig, None, [f"salt={typed}"]).salt == typed
    assert load_config(_Cfg, None, ["name=no", "size=007"]) == _Cfg(size=7, name="no")
    cfg = load_config(CleanConfig, None, ["strip_html=no", "max_chars=null", "min_hangul_ratio=0.10"])
    assert (cfg.strip_html, cfg.max_chars, cfg.min_hangul_ratio) == (False, None, 0.1)

    @dataclasses.dataclass(kw_only=True)
    class Outer:
        inner: _Cfg = dataclasses.field(default_factory=_Cfg)
        unset: Optional[_Cfg] = None

    assert load_config(Outer, None, ["inner.name=on", "unset.size=3"]) == Outer(inner=_Cfg(name="on"), unset=_Cfg(size=3))


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """`lm train --out 50m --model 50m` made a folder '50m': the next run read that folder as the config file."""
    from koforge.data.clean import CleanConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "korean-web").mkdir()
    assert load_config(CleanConfig, "korean-web", group="data").min_chars == 10


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: 4\nname: [x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"config file '{bad}' is not valid YAML, line 3"):
        load_config(_Cfg, str(bad))
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping of key: value"):
        load_config(_Cfg, str(listed))


def test_tracking_off_is_a_no_op(monkeypatch):
    monkeypatch.setenv("KOFORGE_MLFLOW", "off")
    with tracked_run("x", "r", params={"a": 1}) as run:
        run.log_metrics({"m": 1.0})
        assert not run.active


def test_only_rank_0_of_a_torchrun_job_tracks(mlflow_store, monkeypatch):
    import mlflow

    monkeypatch.setenv("RANK", "1")  # what torchrun sets in its second process
    with tracked_run("koforge-ranks", "r", params={"a": 1}) as run:
        assert not run.active
    monkeypatch.setenv("RANK", "0")
    with tracked_run("koforge-ranks", "r", params={"a": 1}) as run:
        assert run.active
    mlflow.set_tracking_uri(mlflow_store)
    assert len(mlflow.search_runs(experiment_names=["koforge-ranks"])) == 1


def test_a_store_failure_mid_run_turns_tracking_off_instead_of_raising():
    class Broken:
        def log_metrics(self, *a, **k):
            raise OSError("database is gone")

    run = TrackedRun(Broken(), "id")
    run.log_metrics({"loss": 1.0}, step=1)
    assert not run.active
    run.log_metrics({"loss": 2.0}, step=2)  # no error, no retry


def test_tracked_run_logs_params_and_metrics_to_a_real_store(mlflow_store):
    import mlflow

    with tracked_run("koforge-test", "foundation", params={"vocab_size": 32000}) as run:
        run.log_metrics({"loss": 0.5, "nan": float("nan")}, step=3)
        run_id = run.run_id
    got = mlflow.get_run(run_id)
    assert got.data.params == {"vocab_size": "32000"}
    assert got.data.metrics == {"loss": 0.5}
    assert got.info.status == "FINISHED"


def test_metrics_take_numpy_and_torch_scalars_and_drop_what_is_not_a_number():
    import numpy as np
    import torch

    class Recorder:
        def log_metrics(self, metrics, step=None):
            self.got = metrics

    store = Recorder()
    TrackedRun(store, "id").log_metrics({"np32": np.float32(1.5), "np64": np.int64(3), "t": torch.tensor(2.0),
                                         "py": 4, "flag": True, "tflag": torch.tensor(True), "vec": torch.ones(2),
                                         "text": "x", "none": None, "nan": float("nan"), "ndcg@10": 0.5})
    assert store.got == {"np32": 1.5, "np64": 3.0, "t": 2.0, "py": 4.0, "ndcg_10": 0.5}
    assert all(type(v) is float for v in store.got.values())


def test_read_json_names_a_non_utf8_file_and_the_fix(tmp_path):
    from koforge._utils.errors import InputPathError
    from koforge._utils.io import read_json

    (tmp_path / "cp.json").write_bytes('{"a": "한국어"}'.encode("cp949"))
    with pytest.raises(InputPathError, match=r"'.*cp.json' is not UTF-8 \(byte 7: 0xc7\). Convert it, e.g. `iconv"):
        read_json(tmp_path / "cp.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputPathError, match="is not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_an_unreachable_tracking_server_is_tried_once_per_process(monkeypatch, caplog):
    """Each run retried an unreachable HTTP store for about four minutes (the demo opens a dozen runs)."""
    import mlflow
    import requests

    import koforge.tracking.mlflow_run as mlflow_run

    monkeypatch.setattr(mlflow_run, "_UNREACHABLE", set())
    monkeypatch.setenv("KOFORGE_MLFLOW", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens: connection refused
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tried = []
    real = mlflow.set_experiment
    monkeypatch.setattr(mlflow, "set_experiment", lambda name: tried.append(name) or real(name))
    with caplog.at_level(logging.WARNING, logger="koforge"):
        for name in ("first", "second", "third"):
            with tracked_run("koforge-unreachable", name, params={"a": 1}) as run:
                run.log_metrics({"m": 1.0})
                assert not run.active
    assert tried == ["koforge-unreachable"]
    warnings = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert len(warnings) == 1 and "unreachable" in warnings[0], warnings

    class DownMidRun:  # the store goes away during a run: later runs skip it too
        def log_metrics(self, *a, **k):
            try:
                raise requests.exceptions.ConnectionError("refused")
            except requests.exceptions.ConnectionError as e:
                raise mlflow.exceptions.MlflowException(f"API request failed with exception {e}")

    TrackedRun(DownMidRun(), "id", "http://store:5000").log_metrics({"loss": 1.0})
    assert "http://store:5000" in mlflow_run._UNREACHABLE
    assert mlflow_run.store_unreachable("http://store:5000") and not mlflow_run.store_unreachable("http://other:5000")


def test_a_text_file_passed_as_a_config_is_named_without_echoing_it(tmp_path):
    """A corpus passed where a YAML goes parsed as one mapping whose key was the whole text: the message
    repeated every line of it, twice."""
    corpus = tmp_path / "reviews.txt"
    corpus.write_text("영화 정말 재미있다: " + "가" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(_Cfg, str(corpus))
    assert len(str(e.value)) < 600, len(str(e.value))
    assert f"'{corpus}' is not a .yaml file: pass a YAML config" in str(e.value)


def test_an_output_folder_that_is_a_file_or_cannot_be_written_is_refused(tmp_path, monkeypatch):
    from koforge._utils.io import check_folder_output

    taken = tmp_path / "taken.txt"
    taken.write_text("x", encoding="utf-8")
    with pytest.raises(OutputPathError, match="is a file, but this output is a folder"):
        check_folder_output(taken)
    with pytest.raises(OutputPathError, match="'.*taken.txt' is a file, not a folder"):
        check_folder_output(taken / "run")
    assert check_folder_output(tmp_path / "new" / "run") == tmp_path / "new" / "run"  # creatable: nothing made yet
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr("koforge._utils.io.os.access", lambda *a: False)  # a read-only folder, even for root
    with pytest.raises(OutputPathError, match="cannot write into output .*no write permission"):
        check_folder_output(tmp_path)
    with pytest.raises(OutputPathError, match="no write permission in"):
        check_folder_output(tmp_path / "run")


def test_load_failure_names_a_file_given_as_a_model_folder(tmp_path):
    """transformers reads a file path as a config.json: "not a valid JSON file" pointed at a config never given."""
    from koforge._utils.errors import load_failure

    notes = tmp_path / "notes.txt"
    notes.write_text("text\n", encoding="utf-8")
    error = OSError(f"It looks like the config file at '{notes}' is not a valid JSON file.")
    assert load_failure(notes, error).startswith(f"'{notes}' is a file, not a model folder. Pass the folder")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0")
    assert f"(the folder it is in: '{tmp_path}')" in load_failure(str(weights), error)
    assert "not valid JSON" in load_failure(tmp_path, OSError("the config is not a valid JSON file"))


def test_a_binary_file_passed_as_a_config_names_the_fix(tmp_path):
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(ConfigError, match=r"cannot read config file .*weights.bin.*Pass a UTF-8 YAML file"):
        load_config(_Cfg, binary)

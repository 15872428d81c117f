"""Foundation: atomic outputs (nothing half-written, modes, refusal), typed config errors, MLflow glue."""
from __future__ import annotations

import dataclasses
import os
import stat

import pytest

from koforge._utils.errors import ConfigError, OutputExistsError
from koforge._utils.io import atomic_dir, atomic_file
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


def test_atomic_outputs_get_umask_modes_not_private_temp_modes(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            pass
        with atomic_file(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


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


def test_tracking_off_is_a_no_op(monkeypatch):
    monkeypatch.setenv("KOFORGE_MLFLOW", "off")
    with tracked_run("x", "r", params={"a": 1}) as run:
        run.log_metrics({"m": 1.0})
        assert not run.active


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

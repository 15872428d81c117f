"""DDP through torchrun: 2 CPU processes on gloo train tiny stages (cosent, timed, mlm) and end with the same
weights; the mlm head, outside DDP, gets the same averaged gradients on both."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from free_port import free_port


def test_torchrun_two_cpu_processes(tiny_bert, assets, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KOFORGE_MLFLOW": "off", "KOFORGE_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(Path(__file__).with_name("_ddp_worker.py")), str(tiny_bert), str(assets), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "checkpoints" / "sts" / "final" / "modules.json").exists()
    assert (out / "rank0.sha").read_text() == (out / "rank1.sha").read_text()
    assert (out / "comparison.md").exists()
    assert (out / "rank0.head").read_text() == (out / "rank1.head").read_text() == "True"  # mlm head synced

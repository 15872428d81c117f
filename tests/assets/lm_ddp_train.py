"""Run by tests/lm/test_lm_train.py under `torchrun --nproc_per_node=2` (gloo, CPU): train, dump history."""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lm"))
torch.set_num_threads(1)

from lm_helpers import tiny_config  # noqa: E402

from koforge.lm.train import TrainConfig, train_lm  # noqa: E402


def main() -> None:
    data, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = TrainConfig(data_dir=data, out_dir=out, steps=steps, batch=8, seq_len=16, lr=3e-3, warmup=2,
                      eval_every=0, ckpt_every=0, device="cpu", log_every=1)
    result = train_lm(tiny_config(), cfg)
    if torch.distributed.get_rank() == 0:
        (Path(out) / "losses.json").write_text(json.dumps([h["train_loss"] for h in result.history]))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

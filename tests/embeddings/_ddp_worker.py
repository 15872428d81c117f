"""Run by `torchrun --nproc_per_node 2` from test_embed_ddp.py: a tiny recipe under DDP (gloo, CPU)."""
import hashlib
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
os.environ.setdefault("KOFORGE_MLFLOW", "off")
os.environ.setdefault("KOFORGE_PROGRESS", "0")

from koforge.embeddings.recipe import load_recipe, run_recipe  # noqa: E402

base, assets, out = sys.argv[1:4]
recipe = load_recipe({"name": "ddp", "data_root": assets, "device": "cpu", "evaluate_base": False,
                      "evaluation": {"korsts": "embed_sts.tsv", "korquad": None, "separation": None,
                                     "bitext_ko": None, "bitext_en": None},
                      "stages": [{"name": "sts", "objective": "cosent", "max_steps": 2, "batch_size": 4,
                                  "data": [{"kind": "sts", "path": "embed_sts.tsv"}]},
                                 # a time schedule: every rank takes rank 0's clock (lr and the budget's stop)
                                 {"name": "timed", "objective": "cosent", "max_steps": 2, "batch_size": 4,
                                  "schedule": "time", "max_minutes": 10,
                                  "data": [{"kind": "sts", "path": "embed_sts.tsv"}]},
                                 {"name": "mlm", "objective": "mlm", "max_steps": 2, "batch_size": 4, "mlm_negatives": 64,
                                  "data": [{"kind": "text", "path": "embed_texts.txt"}]}]})
result = run_recipe(recipe, base, out)
model_hash = hashlib.sha256()
import koforge.embeddings.model as m  # noqa: E402

final = m.build_embedding_model(result.final_model)
for name, p in sorted(m.backbone(final).state_dict().items()):
    model_hash.update(p.detach().cpu().numpy().tobytes())
Path(out, f"rank{os.environ['RANK']}.sha").write_text(model_hash.hexdigest())

# The mlm head lives in the loss, outside DDP: its gradients must still be the same on every rank.
import torch.distributed as dist  # noqa: E402

from koforge.embeddings.mlm import MaskedLMLoss  # noqa: E402

rank = int(os.environ["RANK"])
head = MaskedLMLoss(final, negatives=64)
head([final.preprocess([f"rank {rank} sentence {i}" for i in range(rank + 2)])]).backward()
grad = torch.cat([p.grad.flatten() for p in head.transform.parameters()])
if not dist.is_initialized():
    dist.init_process_group("gloo")
grads = [torch.zeros_like(grad) for _ in range(dist.get_world_size())]
dist.all_gather(grads, grad)
Path(out, f"rank{rank}.head").write_text(str(all(torch.equal(grads[0], g) for g in grads)))

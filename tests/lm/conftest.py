import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine they lose a lot.
torch.set_num_threads(1)

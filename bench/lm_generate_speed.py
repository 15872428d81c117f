"""Generation speed: the koforge KV-cache engine vs transformers `generate`, same exported weights.

Weights: the pretrain demo's export (bench_out("lm_pretrain_demo")/hf) when it
exists, else the tiny-10m preset with random weights exported the same way.
Each variant runs in its own process (so peak RSS is its own): koforge fp32,
koforge fp32 compiled (`GenerationEngine(compile=True)`: torch.compile of the
decode step; its one-off compile time per batch size is printed apart and
excluded from decode tok/s), koforge int8 (dynamic quantization) and
transformers LlamaForCausalLM fp32 (sdpa, its default cache; with
KOFORGE_BENCH_HF_COMPILE=1 also its static cache + compiled forward), at batch
1 and 8, greedy, a 64-token prompt and 64 new tokens (no early stop). Time to first token = prefill + first token;
decode tokens/s = rows x (new tokens - 1) / time after the first token.
The three processes run in interleaved rounds (order rotating), so a load
change on a shared machine hits every variant alike; each figure is the
median over rounds and each ratio the median of the per-round ratios. The
same ratios on process CPU time are printed too (they ignore time the
process spent descheduled). koforge's engine serves fp32 CPU models through
`koforge.lm.deploy.DecodingLinear` (its default, no option needed).
Env: KOFORGE_BENCH_PROMPT (64), KOFORGE_BENCH_NEW (64), KOFORGE_BENCH_REPEATS (2),
KOFORGE_BENCH_ROUNDS (3), KOFORGE_BENCH_HF_COMPILE (0).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_out  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Both engines get the same intra-op thread count; 1 by default because on this shared 2-core machine a
# 2-thread step measured 2x slower than a 1-thread one (OpenMP barriers wait on descheduled threads).
THREADS = int(os.environ.get("KOFORGE_BENCH_THREADS", "1"))
PROMPT = int(os.environ.get("KOFORGE_BENCH_PROMPT", "64"))
NEW = int(os.environ.get("KOFORGE_BENCH_NEW", "64"))
REPEATS = int(os.environ.get("KOFORGE_BENCH_REPEATS", "2"))
ROUNDS = int(os.environ.get("KOFORGE_BENCH_ROUNDS", "3"))
KINDS = ("koforge-fp32", "koforge-fp32-compiled", "koforge-int8", "transformers-fp32") + \
    (("transformers-fp32-compiled",) if os.environ.get("KOFORGE_BENCH_HF_COMPILE") == "1" else ())
BATCHES = (1, 8)


def _prompts(vocab: int, batch: int):
    import torch

    return torch.randint(3, vocab, (batch, PROMPT), generator=torch.Generator().manual_seed(batch))


def worker(kind: str, folder: str) -> dict:
    """Time one variant; returns its figures (run in a fresh process)."""
    import torch

    torch.set_num_threads(THREADS)

    out: dict = {"kind": kind}
    if kind.startswith("koforge"):
        from koforge.lm.deploy import quantize_int8
        from koforge.lm.engine import GenerationConfig, GenerationEngine
        from koforge.lm.hf import import_from_hf

        model, cfg = import_from_hf(folder)
        if kind == "koforge-int8":
            model = quantize_int8(model)
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(model.state_dict(), Path(tmp) / "m.pt")
                out["disk_mb"] = (Path(tmp) / "m.pt").stat().st_size / 2**20
        engine = GenerationEngine(model, max_batch=max(BATCHES), max_len=PROMPT + NEW, compile=kind.endswith("compiled"))
        vocab = cfg.vocab_size

        def run(ids, n):
            return engine.generate(ids.tolist(), GenerationConfig(max_new_tokens=n))
    else:
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()
        vocab = model.config.vocab_size
        static = {}
        if kind.endswith("compiled"):  # transformers' recipe: static cache + compiled forward
            model.forward = torch.compile(model.forward, dynamic=False)
            static = {"cache_implementation": "static"}

        def run(ids, n):
            with torch.inference_mode():
                return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, pad_token_id=0, **static)
    for b in BATCHES:
        ids = _prompts(vocab, b)
        t = time.perf_counter()
        run(ids, 4)  # warm-up (and the compile of a compiled variant)
        if kind == "transformers-fp32-compiled":  # its static cache is sized by max_new_tokens: one graph per size
            run(ids, 1), run(ids, NEW)
        warm_s = time.perf_counter() - t
        times: dict[str, list[float]] = {"ttft": [], "full": [], "cpu_ttft": [], "cpu_full": []}
        for _ in range(REPEATS):
            for n, key in ((1, "ttft"), (NEW, "full")):
                t, c = time.perf_counter(), time.process_time()
                run(ids, n)
                times[key].append(time.perf_counter() - t)
                times[f"cpu_{key}"].append(time.process_time() - c)
        m = {k: statistics.median(v) for k, v in times.items()}
        out[f"b{b}"] = {"ttft_ms": 1000 * m["ttft"], "decode_tok_s": b * (NEW - 1) / max(1e-9, m["full"] - m["ttft"]),
                        "cpu_decode_tok_s": b * (NEW - 1) / max(1e-9, m["cpu_full"] - m["cpu_ttft"]), "warmup_s": warm_s}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["threads"] = torch.get_num_threads()
    return out


def weights_folder() -> Path:
    demo = bench_out("lm_pretrain_demo") / "hf"
    if (demo / "config.json").exists():
        return demo
    import torch

    from koforge.config import load_config
    from koforge.lm.config import LMConfig
    from koforge.lm.hf import export_model
    from koforge.lm.model import KoLM

    folder = bench_out("lm_generate_speed") / "hf-random-tiny-10m"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        export_model(KoLM(load_config(LMConfig, "tiny-10m", group="lm")), folder, overwrite=True)
    return folder


def main() -> None:
    from rich.console import Console

    from koforge.cli._common import rows_table

    folder = weights_folder()
    rounds: list[dict] = []
    for r in range(ROUNDS):
        results = {}
        for kind in KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)]:  # rotate the order
            proc = subprocess.run([sys.executable, __file__, "--worker", kind, str(folder)], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{kind} failed:\n{proc.stderr[-2000:]}")
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        rounds.append(results)

    def med(kind: str, b: int, key: str) -> float:
        return statistics.median(r[kind][f"b{b}"][key] for r in rounds)

    def ratio(num: str, den: str, b: int, key: str) -> float:
        return statistics.median(r[num][f"b{b}"][key] / r[den][f"b{b}"][key] for r in rounds)

    fp32_mb = (folder / "model.safetensors").stat().st_size / 2**20
    rows = []
    for kind in KINDS:
        for b in BATCHES:
            rows.append({"engine": kind, "batch": b, "TTFT ms": med(kind, b, "ttft_ms"),
                         "decode tok/s": med(kind, b, "decode_tok_s"),
                         "peak RSS MB": max(r[kind]["peak_rss_mb"] for r in rounds),
                         "weights MB": rounds[0][kind].get("disk_mb", fp32_mb),
                         "warm-up s": med(kind, b, "warmup_s")})
    console = Console(width=150)  # wide enough for the table when not on a terminal
    console.print(f"weights: {folder} | prompt {PROMPT} tokens, {NEW} new tokens, greedy, {ROUNDS} interleaved "
                  f"rounds x median of {REPEATS}, threads {rounds[0]['koforge-fp32']['threads']}")
    console.print(rows_table(rows, title="generation speed (CPU)"))
    console.print("warm-up s: the warm-up requests of each batch size (4 new tokens; transformers compiled also 1 and "
                  f"{NEW}, one static cache size each); for compiled variants it includes the one-off compiles, which "
                  "decode tok/s and TTFT exclude")
    hf = "transformers-fp32"
    for b in BATCHES:
        console.print(f"batch {b}: decode ratio vs transformers generate (eager): koforge eager "
                      f"{ratio('koforge-fp32', hf, b, 'decode_tok_s'):.2f}, koforge compiled "
                      f"{ratio('koforge-fp32-compiled', hf, b, 'decode_tok_s'):.2f} (goal >= 1.5; on CPU time "
                      f"{ratio('koforge-fp32', hf, b, 'cpu_decode_tok_s'):.2f} / "
                      f"{ratio('koforge-fp32-compiled', hf, b, 'cpu_decode_tok_s'):.2f}), "
                      f"TTFT ratio transformers/koforge {ratio(hf, 'koforge-fp32', b, 'ttft_ms'):.2f}, "
                      f"int8/fp32 decode {ratio('koforge-int8', 'koforge-fp32', b, 'decode_tok_s'):.2f}")
        if "transformers-fp32-compiled" in KINDS:
            console.print(f"batch {b}: compiled vs compiled, koforge / transformers static cache + compiled forward: "
                          f"{ratio('koforge-fp32-compiled', 'transformers-fp32-compiled', b, 'decode_tok_s'):.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3])))
    else:
        main()

"""Compression lab for Hugging Face causal LMs: analyze, cut, quantize, heal, score, package.

Supported layouts: llama (and koforge's own LMs exported as llama), mistral,
qwen3, exaone4. Every method works in place on a loaded model; `apply_compression`
runs a recipe and saves a plain Hugging Face folder whose config matches its
weights; `run_baseline` / `evaluate_compressed` measure perplexity and speed and
give PerfNorm, SpeedNorm and Score; `koforge.compress.experiment.run` runs Hydra
experiments and sweeps. Names resolve lazily (no torch import until used).
"""
from koforge._utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports("koforge.compress", (
    "analyze:analyze_model apply:apply_compression,compress_model "
    "config:CompressionConfig,ExperimentConfig,MeasureConfig heads:prune_heads heal:heal "
    "layers:block_influence,drop_layers,layers_to_keep layout:SUPPORTED_MODEL_TYPES,UnsupportedModelError,load_model "
    "package:package_submission quantize:convert_dtype,quantize_int8 report:compression_report "
    "score:compute_score,evaluate_compressed,run_baseline width:reduce_width"))

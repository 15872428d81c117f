"""Compression lab for Hugging Face causal LMs: analyze, cut, quantize, heal, score, package.

Supported layouts: llama (and koforge's own LMs exported as llama), mistral,
qwen3, exaone4. Every method works in place on a loaded model; `apply_compression`
runs a recipe and saves a plain Hugging Face folder whose config matches its
weights; `run_baseline` / `evaluate_compressed` measure perplexity and speed and
give PerfNorm, SpeedNorm and Score; `koforge.compress.experiment.run` runs Hydra
experiments and sweeps.
"""
from koforge.compress.analyze import analyze_model
from koforge.compress.apply import apply_compression, compress_model
from koforge.compress.config import CompressionConfig, ExperimentConfig, MeasureConfig
from koforge.compress.heads import prune_heads
from koforge.compress.heal import heal
from koforge.compress.layers import block_influence, drop_layers, layers_to_keep
from koforge.compress.layout import SUPPORTED_MODEL_TYPES, UnsupportedModelError, load_model
from koforge.compress.package import package_submission
from koforge.compress.quantize import convert_dtype, quantize_int8
from koforge.compress.report import compression_report
from koforge.compress.score import compute_score, evaluate_compressed, run_baseline
from koforge.compress.width import reduce_width

__all__ = [
    "SUPPORTED_MODEL_TYPES", "CompressionConfig", "ExperimentConfig", "MeasureConfig", "UnsupportedModelError",
    "analyze_model", "apply_compression", "block_influence", "compress_model", "compression_report", "compute_score",
    "convert_dtype", "drop_layers", "evaluate_compressed", "heal", "layers_to_keep", "load_model",
    "package_submission", "prune_heads", "quantize_int8", "reduce_width", "run_baseline",
]

"""koforge.lm: a small Korean LLM from scratch (RoPE, GQA, SwiGLU, RMSNorm, optional MoE and multi-token
prediction), its trainer (exact resume, DDP through torchrun), KV-cache generation engine and Hugging Face
Llama export/import. Names resolve lazily (no torch import until used).
"""
from koforge._utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports("koforge.lm", (
    "config:LMConfig model:KoLM train:TrainConfig,train_lm engine:GenerationConfig,GenerationEngine "
    "checkpoint:load_model load:open_model hf:export_to_hf,import_from_hf"))

"""Typed configs of the compression lab: what to measure, what to cut, an experiment.

`CompressionConfig` is one flat recipe so that Hydra overrides and sweeps stay
one dotted key (`compression.keep_layers=22,24,26`): `methods` lists the steps
in the order they run, each step reads only its own fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from koforge._utils.errors import ConfigError
from koforge._utils.logging import get_logger

log = get_logger(__name__)

METHODS = ("drop_layers", "prune_heads", "reduce_width", "heal", "convert_dtype", "quantize_int8")
DROP_STRATEGIES = ("top", "bottom", "explicit", "importance")
IMPORTANCE = ("magnitude", "activation")
# Settings that mean nothing without their method (all None / empty by default).
_SETTING_OF = {"keep_layers": "drop_layers", "keep_fraction": "drop_layers", "drop_indices": "drop_layers", "keep_heads": "prune_heads",
               "intermediate_size": "reduce_width", "hidden_size": "reduce_width"}


@dataclass(kw_only=True)
class MeasureConfig:
    """How perplexity and speed are measured (the same for a baseline and its compressed models)."""

    texts: Optional[str] = None
    """Held-out text: .txt (one document per line), .jsonl (field `text_field`) or a KorQuAD-style .json."""
    text_field: str = "text"
    """Field of each .jsonl line holding the text (e.g. `content` for the petitions)."""
    max_docs: int = 200
    """Use at most this many documents (first ones, in file order)."""
    max_chars: int = 60000
    """Stop adding documents past this many characters (keeps perplexity cheap on CPU)."""
    context: int = 256
    """Sliding-window length in tokens."""
    stride: int = 128
    """Window step; each token is scored once, with up to `context - stride` tokens of left context."""
    batch_size: int = 4
    """Windows per forward pass for perplexity."""
    prompts: List[str] = field(default_factory=lambda: ["대한민국의 수도는", "오늘 날씨가 좋아서", "인공지능 기술은"])
    """Prompts of the speed test."""
    new_tokens: int = 32
    """Tokens generated per prompt (greedy, no early stop)."""
    warmup: int = 1
    """Untimed warm-up passes over the prompts."""
    repeats: int = 5
    """Timed passes; the median is reported."""
    threads: Optional[int] = None
    """torch CPU threads during measurement (None: leave as is)."""

    def __post_init__(self) -> None:
        if self.context < 2:
            raise ConfigError(f"measure.context must be >= 2 tokens, got {self.context}.")
        if not 1 <= self.stride <= self.context:
            raise ConfigError(f"measure.stride must be in [1, context={self.context}], got {self.stride}.")
        for name in ("batch_size", "repeats", "max_docs", "max_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"measure.{name} must be >= 1, got {getattr(self, name)}.")
        if self.new_tokens < 2:  # time per token is measured after the first one
            raise ConfigError(f"measure.new_tokens must be >= 2, got {self.new_tokens}.")
        if self.warmup < 0:
            raise ConfigError(f"measure.warmup must be >= 0, got {self.warmup}.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"measure.threads must be >= 1 (or null to leave torch's setting), got {self.threads}.")
        if not self.prompts:
            raise ConfigError("measure.prompts is empty: give at least one prompt for the speed test.")


@dataclass(kw_only=True)
class CompressionConfig:
    """A compression recipe: the steps in `methods`, in order, and each step's settings."""

    methods: List[str] = field(default_factory=lambda: ["convert_dtype"])
    """Steps in order, from: drop_layers, prune_heads, reduce_width, heal, convert_dtype, quantize_int8. Only heal
    may repeat; heal and quantize_int8 come before a cast to fp16/bf16; prune_heads, reduce_width and heal before
    quantize_int8 (they would move weights off its grid)."""
    keep_layers: Optional[int] = None
    """drop_layers: number of decoder layers to keep (top/bottom/importance)."""
    keep_fraction: Optional[float] = None
    """drop_layers: the share of decoder layers to keep instead of a count (0.5: half, rounded; at least 1)."""
    drop_strategy: str = "importance"
    """drop_layers: top (drop the last layers), bottom (drop the first), explicit (`drop_indices`), importance (Block Influence)."""
    drop_indices: List[int] = field(default_factory=list)
    """drop_layers with explicit (refused with another strategy): indices of the layers to drop."""
    keep_heads: Optional[int] = None
    """prune_heads: query heads to keep per layer; must be a multiple of the GQA group size."""
    head_importance: str = "activation"
    """prune_heads: magnitude or activation."""
    intermediate_size: Optional[int] = None
    """reduce_width: new MLP intermediate size (None: unchanged)."""
    hidden_size: Optional[int] = None
    """reduce_width: new hidden size (None: unchanged)."""
    width_importance: str = "activation"
    """reduce_width: magnitude or activation."""
    dtype: str = "fp16"
    """convert_dtype: fp16 or bf16 (fp32 to undo)."""
    int8_skip_lm_head: bool = True
    """quantize_int8: keep lm_head and embeddings in float."""
    calibration_texts: Optional[str] = None
    """Calibration text for importance and healing (same formats as measure.texts); None: measure.texts."""
    calibration_docs: int = 64
    """Documents of calibration text for importance scores."""
    calibration_context: int = 128
    """Tokens per calibration sequence."""
    heal_steps: int = 100
    """heal: optimisation steps of KL distillation from the base model."""
    heal_lr: float = 3e-4
    """heal: AdamW learning rate."""
    heal_batch_size: int = 8
    """heal: sequences per step."""
    heal_temperature: float = 1.0
    """heal: softmax temperature of the KL."""
    seed: int = 0
    """Seed of calibration sampling and healing."""

    def layers_kept(self, n_layers: int) -> Optional[int]:
        """keep_layers, or keep_fraction of `n_layers` (rounded, at least 1)."""
        if self.keep_fraction is not None:
            return max(1, round(self.keep_fraction * n_layers))
        return self.keep_layers

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"compression.methods has {bad or 'no steps'}; choose steps from: {', '.join(METHODS)}.")
        if self.drop_strategy not in DROP_STRATEGIES:
            raise ConfigError(f"compression.drop_strategy '{self.drop_strategy}' unknown; use one of {', '.join(DROP_STRATEGIES)}.")
        for name in ("head_importance", "width_importance"):
            if getattr(self, name) not in IMPORTANCE:
                raise ConfigError(f"compression.{name} '{getattr(self, name)}' unknown; use magnitude or activation.")
        if self.dtype not in ("fp16", "bf16", "fp32", "float16", "bfloat16", "float32"):
            raise ConfigError(f"compression.dtype '{self.dtype}' unknown; use fp16, bf16 or fp32.")
        repeated = sorted({m for m in self.methods if m != "heal" and self.methods.count(m) > 1})
        if repeated:
            raise ConfigError(f"compression.methods {self.methods} lists {repeated[0]} twice; a step runs once per recipe "
                              "(its settings are read anew, so a second cut counts layers/indices of the cut model). "
                              "Only heal may repeat.")
        if "drop_layers" in self.methods:
            if self.drop_indices and self.drop_strategy != "explicit":
                raise ConfigError(f"compression.drop_indices is set but drop_strategy is {self.drop_strategy}, which "
                                  "ignores it; add drop_strategy=explicit to drop those layers.")
            if self.drop_strategy == "explicit" and not self.drop_indices:
                raise ConfigError("compression.drop_strategy=explicit needs compression.drop_indices (e.g. [20,21]).")
            if self.keep_layers is not None and self.keep_fraction is not None:
                # a count is the more specific request (e.g. keep_layers=6 over the drop_half_heal preset's fraction)
                log.warning("compression.keep_layers=%s is set, so keep_fraction=%s (from a preset?) is ignored.",
                            self.keep_layers, self.keep_fraction)
                self.keep_fraction = None
            if self.keep_fraction is not None and not 0 < self.keep_fraction <= 1:
                raise ConfigError(f"compression.keep_fraction={self.keep_fraction} must be in (0, 1], e.g. 0.5 for half.")
            if self.drop_strategy != "explicit" and self.keep_layers is None and self.keep_fraction is None:
                raise ConfigError(f"compression.drop_strategy={self.drop_strategy} needs compression.keep_layers "
                                  "(or keep_fraction).")
        if "prune_heads" in self.methods and self.keep_heads is None:
            raise ConfigError("method prune_heads needs compression.keep_heads (query heads to keep).")
        if "reduce_width" in self.methods and self.intermediate_size is None and self.hidden_size is None:
            raise ConfigError("method reduce_width needs compression.intermediate_size and/or compression.hidden_size.")
        for name, method in _SETTING_OF.items():
            if getattr(self, name) not in (None, []) and method not in self.methods:
                raise ConfigError(f"compression.{name} is set but method {method} is not in compression.methods "
                                  f"{self.methods}, so it would do nothing; add it, e.g. methods=[{method}].")
        self._check_order()
        for name in ("heal_steps", "heal_batch_size", "calibration_docs", "calibration_context"):
            if getattr(self, name) < 1:
                raise ConfigError(f"compression.{name} must be >= 1, got {getattr(self, name)}.")
        if self.heal_lr <= 0 or self.heal_temperature <= 0:
            raise ConfigError("compression.heal_lr and heal_temperature must be > 0.")

    def _check_order(self) -> None:
        """Steps that need float32 weights come before a cast away from them; nothing casts int8 weights."""
        m = self.methods
        if "quantize_int8" in m:
            # Cutting input columns (width, heads) or training moves a row off its int8 grid; dropping whole layers does not.
            after = [x for x in ("prune_heads", "reduce_width", "heal") if x in m and m.index(x) > m.index("quantize_int8")]
            if after:
                raise ConfigError(f"{after[0]} after quantize_int8 would move weights off the int8 grid that config.json "
                                  f"records; put quantize_int8 last, e.g. methods=[{', '.join(x for x in m if x != 'quantize_int8')}, "
                                  "quantize_int8].")
        if "convert_dtype" in m and "quantize_int8" in m and m.index("convert_dtype") > m.index("quantize_int8"):
            raise ConfigError("convert_dtype after quantize_int8 would move weights off the int8 grid; "
                              "put convert_dtype first, or leave it out.")
        if "convert_dtype" in m and self.dtype not in ("fp32", "float32"):
            needs_fp32 = [x for x in ("heal", "quantize_int8") if x in m and m.index(x) > m.index("convert_dtype")]
            if needs_fp32:
                raise ConfigError(f"{needs_fp32[0]} needs float32 weights but runs after convert_dtype to {self.dtype}; "
                                  f"put convert_dtype after it, e.g. methods=[{', '.join(x for x in m if x != 'convert_dtype')}, "
                                  "convert_dtype].")


@dataclass(kw_only=True)
class ExperimentConfig:
    """One Hydra experiment: a base model, its baseline, a recipe, and where results go."""

    name: str
    """Strategy name; runs land in `{output_root}/{yyyy-mm-dd}_{name}/`."""
    model: str
    """Base model: a Hugging Face folder or hub name."""
    baseline: Optional[str] = None
    """baseline_result.json of the base model (None: measured in the run)."""
    output_root: str = "outputs"
    """Folder holding every run."""
    save_model: bool = True
    """Keep the compressed model folder in the run (off for big sweeps)."""
    trust_remote_code: bool = False
    """Passed to from_pretrained (only for models you trust)."""
    mlflow_experiment: str = "koforge-compress"
    """MLflow experiment name."""
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"experiment name '{self.name}' must be non-empty without '/'.")
        if not self.model:
            raise ConfigError("experiment.model is empty: give a model folder or hub name.")

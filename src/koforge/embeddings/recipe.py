"""Recipes: a list of training stages, run one after another, each evaluated.

A stage starts from the previous stage's `checkpoints/<stage>/final` (the
first from the base model), trains the parameters of its `scope` with its
`objective`, and writes `checkpoints/<stage>/final` atomically (a failed stage
writes nothing, so the last good checkpoint survives) with
`koforge_embedding.json` (recipe, stage, scores) and `eval.json`. After every
stage the comparison table (`comparison.md`/`.json`) and `metrics.png` are
rewritten. `from_stage` resumes: earlier stages' checkpoints are reused.
Under `torchrun` only rank 0 writes and evaluates.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from koforge._utils.distributed import launch_rank
from koforge._utils.errors import CheckpointError, ConfigError, KoforgeError, OutputExistsError, TrainingError
from koforge._utils.hub import is_local
from koforge._utils.io import atomic_dir, check_folder_output, check_not_an_input, read_json, require_path, write_json
from koforge._utils.logging import get_logger
from koforge.config import config_to_dict, load_config
from koforge.embeddings.adapters import AdapterConfig, save_adapters
from koforge.embeddings.data import (DataSource, build_examples, check_kind, check_layout, group_by_objective,
                                     infonce_parts, objective_of)
from koforge.embeddings.evaluate import EvalSuite, check_suite_inputs, flatten, model_query_prompt, run_suite
from koforge.embeddings.losses import OBJECTIVES, build_loss
from koforge.embeddings.mlm import check_mlm_settings
from koforge.embeddings.model import (METADATA_FILE, EmbeddingModelConfig, build_embedding_model, require_hub_model,
                                      save_embedding_model, transformer_module)
from koforge.embeddings.preflight import check_stages_fit_model
from koforge.embeddings.report import write_comparison
from koforge.embeddings.scopes import EXPANSION_REPORT, SCOPES, LoraSettings, apply_scope
from koforge.embeddings.teacher import student_visible_texts, teacher_embeddings
from koforge.embeddings.train import PRECISIONS, TrainSettings, train_stage, training_autocast

log = get_logger(__name__)


@dataclass(kw_only=True)
class StageConfig:
    """One stage of a recipe."""

    name: str
    scope: str = "full"
    """full, new_embeddings, embeddings, adapters, lora or top_blocks."""
    objective: str = "cosent"
    """simcse, infonce, cosent, angle, distill or mlm (a data source may name another: a multi-task stage)."""
    data: List[DataSource] = field(default_factory=list)
    learning_rate: float = 2e-5
    epochs: float = 1.0
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = None
    """Wall-clock budget of the stage's training loop (teacher encoding excluded)."""
    batch_size: int = 32
    mini_batch_size: Optional[int] = None
    """GradCache mini-batch for simcse/infonce (effective batch = batch_size)."""
    max_length: Optional[int] = None
    """Truncate this stage's training inputs to this many tokens (a distill teacher embeds the text the student
    sees, read to the teacher's own limit); the saved model keeps
    the length it was loaded with (model.max_length), so a short training length never truncates later use."""
    warmup_ratio: float = 0.1
    schedule: str = "steps"
    """Learning-rate schedule: steps (linear over max_steps) or time (linear over the stage's time budget)."""
    temperature: float = 0.05
    """Similarity temperature: simcse/infonce/cosent/angle use scale = 1/temperature (0.05: 20)."""
    group_by_length: bool = True
    """Batch rows of similar length together (batches in random order): much less padding per step."""
    teacher: Optional[str] = None
    """distill: the teacher model (path/hub name) whose embeddings the student learns."""
    mask_rate: float = 0.15
    """mlm: share of each text's tokens to predict."""
    mlm_negatives: int = 4096
    """mlm: vocabulary ids sampled per batch as the softmax's candidates besides the targets (>= vocabulary
    size: the full softmax)."""
    top_blocks: int = 2
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    evaluate: bool = True

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"stage name '{self.name}' must be a non-empty folder name.")
        if self.scope not in SCOPES:
            raise ConfigError(f"stage '{self.name}': scope '{self.scope}' is unknown; use one of {', '.join(SCOPES)}.")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"stage '{self.name}': objective '{self.objective}' is unknown; use one of {', '.join(OBJECTIVES)}.")
        if not self.data:
            raise ConfigError(f"stage '{self.name}' has no data sources; add at least one under data:.")
        if self.schedule not in ("steps", "time"):
            raise ConfigError(f"stage '{self.name}': schedule '{self.schedule}' is unknown; use steps or time.")
        if self.learning_rate <= 0 or self.batch_size < 1 or self.epochs <= 0:
            raise ConfigError(f"stage '{self.name}': learning_rate, batch_size and epochs must be positive.")
        for key in ("max_steps", "max_minutes", "mini_batch_size", "max_length"):
            value = getattr(self, key)
            if value is not None and value <= 0:  # -1 meant "no limit" to the trainer below, without a word
                raise ConfigError(f"stage '{self.name}': {key}={value} must be positive, or null for no limit.")
        try:
            check_mlm_settings(self.mask_rate, self.mlm_negatives)
        except ConfigError as e:
            raise ConfigError(f"stage '{self.name}': {e}") from None


@dataclass(kw_only=True)
class Recipe:
    """A staged embedding-training recipe."""

    name: str = "recipe"
    data_root: Optional[str] = None
    """Folder that relative data paths resolve against (default: $KOFORGE_DATA, else ../shared/data)."""
    model: EmbeddingModelConfig = field(default_factory=EmbeddingModelConfig)
    stages: List[StageConfig] = field(default_factory=list)
    evaluation: EvalSuite = field(default_factory=EvalSuite)
    evaluate_base: bool = True
    device: str = "auto"
    precision: str = "auto"
    """auto (bf16 or fp16 autocast on a GPU, fp32 on CPU), fp32, bf16 (also on a CPU with native bf16), fp16 (GPU)."""
    seed: int = 0
    experiment: str = "koforge-embed"
    budget_minutes: Optional[float] = None
    """Total wall-clock budget of all stages' training (teacher encoding included): a stage without
    max_minutes gets what is left; one with it gets the smaller of the two. Compares runs at equal time."""
    teacher: Optional[str] = None
    """Default teacher of `distill` stages that name none (e.g. the model before vocabulary expansion)."""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError(f"recipe '{self.name}' has no stages.")
        for stage in self.stages:
            if "distill" in group_by_objective(stage.data, stage.objective) and not (stage.teacher or self.teacher):
                raise ConfigError(f"stage '{stage.name}': objective 'distill' needs a teacher; set teacher=<model path or "
                                  f"hub name> on the recipe or stages.<i>.teacher.")
            if stage.schedule == "time" and stage.max_minutes is None and self.budget_minutes is None:
                raise ConfigError(f"stage '{stage.name}': schedule 'time' spreads the learning rate over a time budget, "
                                  "but neither stages.<i>.max_minutes nor budget_minutes is set. Set one, or use schedule steps.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"recipe '{self.name}': precision '{self.precision}' is unknown. "
                              f"Use one of: {', '.join(PRECISIONS)}.")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"recipe '{self.name}' repeats a stage name: {names}.")

    def resolved_data_root(self) -> Path:
        root = self.data_root or os.environ.get("KOFORGE_DATA") or str(Path.cwd().parent / "shared" / "data")
        return Path(root).expanduser()


@dataclass
class RecipeResult:
    """What `run_recipe` wrote."""

    output_dir: Path
    final_model: Path
    stages: list[dict]
    comparison: dict[str, Path]


def load_recipe(path_or_preset: str | os.PathLike | dict, overrides: Sequence[str] = ()) -> Recipe:
    """A Recipe from a YAML path, a shipped preset name (configs/embed/) or a dict, plus key=value overrides.

    Overrides may address one stage by index (`stages.0.max_steps=100`): those are applied to the
    recipe's own stage list first, since a dotlist merge cannot index into a list.
    """
    import yaml
    from omegaconf import OmegaConf

    from koforge.config import preset_path

    indexed = [o for o in overrides if o.startswith("stages.") and "=" in o]
    if not indexed:
        return load_config(Recipe, path_or_preset if isinstance(path_or_preset, dict) else str(path_or_preset),
                           overrides, group="embed")
    raw = path_or_preset if isinstance(path_or_preset, dict) else \
        yaml.safe_load(preset_path("embed", str(path_or_preset)).read_text(encoding="utf-8"))
    layer = OmegaConf.create(raw)
    stages = layer.get("stages") or []
    for item in indexed:
        key, value = item.split("=", 1)
        index = key.split(".")[1]
        if not index.isdigit() or int(index) >= len(stages):
            names = ", ".join(f"{i}: {s.get('name')}" for i, s in enumerate(stages))
            raise ConfigError(f"override '{item}': the recipe has no stage {index} (its stages are {names}). "
                              "Stage indexes start at 0.")
        try:
            OmegaConf.update(layer, key, yaml.safe_load(value), merge=True)
        except Exception as e:  # omegaconf raises several types for a bad index/key
            why = " ".join(str(e).split())  # its message spans lines (full_key, object_type)
            raise ConfigError(f"override '{item}' does not fit the recipe ({why}). Stage indexes start at 0.") from None
    rest = [o for o in overrides if o not in indexed]
    return load_config(Recipe, OmegaConf.to_container(layer), rest, group="embed")


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _stage_dataset(stage: StageConfig, recipe: Recipe, model, cache_dir: Path):
    """The stage's dataset, or a DatasetDict keyed by objective for a multi-task stage (infonce pairs with and
    without hard negatives are two parts of it: `infonce_parts`)."""
    import datasets

    groups = group_by_objective(stage.data, stage.objective)
    sets = {}
    for objective, sources in groups.items():
        columns = build_examples(sources, objective, data_root=recipe.resolved_data_root(), seed=recipe.seed)
        if objective == "infonce":
            world = int(os.environ.get("WORLD_SIZE", "1"))
            for part, part_columns in infonce_parts(columns, stage.batch_size * world).items():
                sets[part] = datasets.Dataset.from_dict(part_columns)
            continue
        if objective == "distill":
            teacher = stage.teacher or recipe.teacher
            visible = student_visible_texts(model.tokenizer, columns["text"], model.max_seq_length)
            # A parallel source's teacher reads the translation (whole: it has no counterpart of the cut).
            translations = columns.pop("teacher_text", [None] * len(visible))
            teacher_texts = [own if other is None else other for own, other in zip(visible, translations)]
            labels = teacher_embeddings(teacher, teacher_texts, cache_dir / f"{stage.name}_teacher.npy",
                                        device=str(model.device))
            if labels.shape[1] != model.get_embedding_dimension():
                raise ConfigError(f"stage '{stage.name}': the teacher '{teacher}' embeds in {labels.shape[1]} dimensions, the "
                                  f"student in {model.get_embedding_dimension()}; distill needs the same width. Use the "
                                  "model before expansion (or another teacher of the student's width).")
            columns["label"] = [row.tolist() for row in labels]
        sets[objective] = datasets.Dataset.from_dict(columns)
    return sets[stage.objective] if len(sets) == 1 and stage.objective in sets else datasets.DatasetDict(sets)


def _n_examples(dataset) -> int:
    return sum(len(d) for d in dataset.values()) if isinstance(dataset, dict) else len(dataset)


def _objectives(stage: StageConfig, dataset) -> set[str]:
    return {objective_of(part) for part in dataset} if isinstance(dataset, dict) else {stage.objective}


def _stage_loss(stage: StageConfig, model, dataset):
    """One loss, or one per dataset part (keys match the DatasetDict's)."""
    def build(objective: str):
        return build_loss(objective, model, temperature=stage.temperature, mini_batch_size=stage.mini_batch_size,
                          mask_rate=stage.mask_rate, mlm_negatives=stage.mlm_negatives)

    return {part: build(objective_of(part)) for part in dataset} if isinstance(dataset, dict) else build(stage.objective)


def _evaluate(model, recipe: Recipe, stage: str, extra: dict) -> dict:
    results = run_suite(model, recipe.evaluation, recipe.resolved_data_root())
    return {"stage": stage, "results": results, "metrics": {**flatten(results), **extra}}


def check_inputs(recipe: Recipe, source: str, start: int = 0) -> None:
    """Fail before anything is written or trained: the model, every stage's local data files, the
    expansion that `new_embeddings` stages need, local teachers, scope settings the model's structure
    cannot take (`check_stages_fit_model`, hub names too) and the evaluation files. Other checks of hub
    names are left to load time."""
    from koforge.embeddings.scopes import read_expansion_report

    if is_local(source):
        require_path(source, "base model")
    else:
        require_hub_model(source, "base model")
    stages = recipe.stages[start:]
    if any(s.scope == "new_embeddings" for s in stages) and Path(source).expanduser().is_dir():
        read_expansion_report(source)  # earlier stages copy the report along, so the source must have it
    for stage in stages:
        groups = group_by_objective(stage.data, stage.objective)
        if "mlm" in groups and len(groups) > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Each process draws its own batch: the mlm head (outside DDP) all-reduces its gradients on the
            # processes that drew an mlm batch while the others all-reduce the model's: the collectives mismatch.
            others = ", ".join(g for g in groups if g != "mlm")
            raise ConfigError(f"stage '{stage.name}': objective 'mlm' shares the stage with {others}, which torchrun "
                              "cannot run (its prediction head averages gradients over processes that may draw "
                              "another objective's batch at the same step). Give mlm a stage of its own.")
        for objective, sources in groups.items():
            for src in sources:  # what the stage would refuse once the stages before it have trained
                check_kind(src, objective)
                if src.kind != "hub":
                    check_layout(src, recipe.resolved_data_root())
        teacher = stage.teacher or recipe.teacher
        if teacher and "distill" in group_by_objective(stage.data, stage.objective):
            what = f"stage '{stage.name}' teacher (set teacher=PATH to use a local model)"
            require_path(teacher, what) if is_local(teacher) else require_hub_model(teacher, what)
    check_stages_fit_model(stages, source, trust_remote_code=recipe.model.trust_remote_code)
    check_suite_inputs(recipe.evaluation, recipe.resolved_data_root())  # read after every stage


OUTPUTS = ("checkpoints", ".scratch", "stages.json", "recipe.json", "comparison.md", "comparison.json", "metrics.png")
"""What a run writes in its output folder (`overwrite` removes these and keeps the rest, e.g. the teacher cache)."""


def _remove_outputs(out: Path) -> None:
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def run_recipe(recipe: Recipe, base_model: str | os.PathLike, output_dir: str | os.PathLike, *,
               from_stage: str | None = None, overwrite: bool = False) -> RecipeResult:
    """Run every stage of `recipe` from `base_model` into `output_dir` (see module docstring).

    Inputs are checked before anything is written. A run that fails before its first stage's
    checkpoint leaves no output folder behind when it created it; a later failure keeps the
    finished stages (resume with `from_stage`).
    """
    out = Path(output_dir).expanduser()
    check_not_an_input(out, [base_model])  # --overwrite would delete the base model the run reads
    check_folder_output(out)  # a file there, or a folder that cannot be written into
    names = [s.name for s in recipe.stages]
    start = 0
    if from_stage is not None:
        if from_stage not in names:
            raise ConfigError(f"--from-stage '{from_stage}' is not a stage of this recipe; stages: {', '.join(names)}.")
        start = names.index(from_stage)
        if start > 0 and not (out / "checkpoints" / names[start - 1] / "final").exists():
            raise CheckpointError(f"cannot resume at '{from_stage}': '{out / 'checkpoints' / names[start - 1] / 'final'}' "
                                  "(the previous stage's output) does not exist. Resume from an earlier stage.")
    elif out.exists() and any(out.iterdir()) and not overwrite and launch_rank() == 0:  # other ranks see rank 0's files
        raise OutputExistsError(f"output '{out}' already exists. Pass --overwrite, --from-stage <stage> to resume, or another folder.")
    source = str(base_model) if start == 0 else str(out / "checkpoints" / names[start - 1] / "final")
    check_inputs(recipe, source, start)
    main = launch_rank() == 0
    existed = out.exists()
    if main and overwrite and from_stage is None and existed:
        _remove_outputs(out)
    fresh = not existed or not any(p.name != "cache" for p in out.iterdir())
    try:
        return _run_stages(recipe, base_model, out, source, start)
    except BaseException:
        if main and fresh and not any((out / "checkpoints").glob("*/final")):  # nothing worth keeping
            if existed:
                _remove_outputs(out)
            else:
                shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if main:
            shutil.rmtree(out / ".scratch", ignore_errors=True)


def _record_recipe(recipe: Recipe, path: Path, start: int) -> None:
    """recipe.json says what trained each checkpoint: a run resumed at stage `start` keeps the earlier stages
    as recorded when they ran (their checkpoints are reused) and records the rest as they run now."""
    settings = config_to_dict(recipe)
    if start > 0 and path.exists():
        try:
            earlier = read_json(path, "recipe.json")["stages"][:start]
        except (KoforgeError, KeyError, TypeError):
            earlier = []
        if [s.get("name") for s in earlier if isinstance(s, dict)] == [s["name"] for s in settings["stages"][:start]]:
            settings["stages"][:start] = earlier
    write_json(path, settings)


def _check_finite_weights(model, stage: str, steps: int) -> None:
    """The loss is checked every step, but the last optimizer step can still leave NaN/inf weights behind."""
    import torch

    bad = next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:
        raise TrainingError(f"stage '{stage}' left non-finite weights ({bad}) after its last step ({steps}); its output "
                            "was not written (the previous stage's checkpoint is the last good one). Lower the "
                            "learning rate or check the data.")


def _run_stages(recipe: Recipe, base_model: str | os.PathLike, out: Path, source: str, start: int) -> RecipeResult:
    from koforge._utils.device import resolve_device
    from koforge._utils.seed import seed_everything
    from koforge.tracking.mlflow_run import tracked_run

    names = [s.name for s in recipe.stages]
    device = resolve_device(recipe.device)
    training_autocast(device, recipe.precision)  # fp16 on a CPU fails here, not after the base evaluation
    main = launch_rank() == 0
    out.mkdir(parents=True, exist_ok=True)
    if main:
        _record_recipe(recipe, out / "recipe.json", start)
    history_path = out / "stages.json"
    history: list[dict] = []
    if start > 0 and history_path.exists():  # resuming: keep the evaluations of the stages reused
        history = [h for h in read_json(history_path) if h["stage"] == "base" or h["stage"] in names[:start]]
    if main and recipe.evaluate_base and start == 0:
        history = [_evaluate(build_embedding_model(base_model, recipe.model, device), recipe, "base", {})]
        write_json(history_path, history)
    spent = 0.0  # minutes of the recipe's budget used so far
    for stage in recipe.stages[start:]:
        seed_everything(recipe.seed)
        model = build_embedding_model(source, recipe.model, device)
        inference_length = model.max_seq_length
        if stage.max_length:
            model.max_seq_length = stage.max_length
        handle = apply_scope(model, stage.scope, model_path=source, top_blocks=stage.top_blocks,
                             adapter=stage.adapter, lora=stage.lora)
        t_data = time.perf_counter()
        dataset = _stage_dataset(stage, recipe, model, out / "cache")
        spent += (time.perf_counter() - t_data) / 60
        max_minutes = stage.max_minutes
        if recipe.budget_minutes is not None:
            left = recipe.budget_minutes - spent
            if left <= 0:
                raise TrainingError(f"the recipe's budget of {recipe.budget_minutes} min is spent before stage '{stage.name}' "
                                    f"({spent:.1f} min used). Raise budget_minutes or give earlier stages a max_minutes.")
            max_minutes = left if max_minutes is None else min(max_minutes, left)
        loss = _stage_loss(stage, model, dataset)
        settings = TrainSettings(learning_rate=stage.learning_rate, batch_size=stage.batch_size, epochs=stage.epochs,
                                 max_steps=stage.max_steps, max_minutes=max_minutes, warmup_ratio=stage.warmup_ratio,
                                 schedule=stage.schedule, group_by_length=stage.group_by_length,
                                 seed=recipe.seed, precision=recipe.precision,
                                 query_prompt=None if _objectives(stage, dataset) == {"simcse"} else model_query_prompt(model),
                                 no_duplicates=bool({"simcse", "infonce"} & _objectives(stage, dataset)))
        params = {"stage": stage.name, "scope": stage.scope, "objective": stage.objective, "source": source,
                  "examples": _n_examples(dataset), "trainable_params": handle.trainable_parameters(),
                  **{f"cfg.{k}": v for k, v in config_to_dict(stage).items() if k != "data"}}
        with tracked_run(recipe.experiment, run_name=f"{recipe.name}/{stage.name}", params=params if main else None) as run:
            scratch = out / ".scratch" / stage.name
            run_info = train_stage(model, loss, dataset, settings, stage=stage.name, scratch_dir=str(scratch),
                                   tracker=run if main else None)
            spent += run_info.seconds / 60
            model.max_seq_length = inference_length
            handle.finalize()
            _check_finite_weights(model, stage.name, run_info.steps)
            final = out / "checkpoints" / stage.name / "final"
            extra = {"train/steps": float(run_info.steps), "train/seconds": run_info.seconds, "train/last_loss": run_info.last_loss,
                     "train/examples": float(_n_examples(dataset))}
            if main:
                shutil.rmtree(scratch, ignore_errors=True)
                meta = {"recipe": config_to_dict(recipe), "stage": stage.name, "source": source, "train": extra,
                        "trainable_params": params["trainable_params"], "budget_stop": run_info.stopped_by_budget}
                with atomic_dir(final, overwrite=True) as tmp:
                    save_embedding_model(model, tmp, meta)
                    if (Path(source) / EXPANSION_REPORT).exists():  # later new_embeddings stages still need it
                        shutil.copy(Path(source) / EXPANSION_REPORT, tmp / EXPANSION_REPORT)
                if stage.scope == "adapters" and stage.adapter.save == "separate":
                    with atomic_dir(final.parent / "adapters", overwrite=True) as tmp:
                        save_adapters(transformer_module(model), tmp)
                entry = _evaluate(model, recipe, stage.name, extra) if stage.evaluate else {"stage": stage.name, "results": {}, "metrics": extra}
                write_json(final.parent / "eval.json", entry)
                write_json(final / METADATA_FILE, {**meta, "scores": entry["metrics"]})
                run.log_metrics({k.replace("@", "_at_"): v for k, v in entry["metrics"].items()})
                history.append(entry)
                write_json(history_path, history)
                write_comparison(history, out)  # the table and plot grow stage by stage
                run.log_artifact(final.parent / "eval.json")
            _barrier()
        source = str(final)
    comparison = write_comparison(history, out) if main else {}
    return RecipeResult(output_dir=out, final_model=Path(source), stages=history, comparison=comparison)

"""koforge.demo: the whole loop (tokenizer, expansion, embeddings, LM, compression) on bundled data.

`run_demo(demo_config(quick=True), "runs/demo")` runs it; `koforge demo` is the CLI.
"""
from koforge.demo.config import STEPS, DemoConfig, demo_config
from koforge.demo.pipeline import DemoResult, StepResult, run_demo

__all__ = ["STEPS", "DemoConfig", "DemoResult", "StepResult", "demo_config", "run_demo"]

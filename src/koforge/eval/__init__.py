"""koforge.eval: one place for every evaluation: KorSTS, KorQuAD retrieval, separation, bitext, MTEB,
perplexity, speed, needle in a haystack, tokenizers, lm-evaluation-harness; `run_eval(EvalConfig(...))`
writes the `eval_<task>.json` that `koforge report` reads. Names resolve lazily.
"""
from koforge._utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports("koforge.eval", (
    "runner:EvalConfig,run_eval schema:EvalResult korsts:evaluate_korsts retrieval:evaluate_korquad_retrieval "
    "separation:evaluate_separation bitext:evaluate_bitext perplexity:evaluate_perplexity speed:measure_speed "
    "needle:evaluate_needle"))

"""The evaluation harness: data sets, scorers, the method x model matrix, the response cache, reports, comparison.

The names below are loaded on first use (PEP 562): importing one submodule, as the CLI does at start-up for the
scorer registry's help text, does not import the harness, the response cache and the reports with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, eagerly, for type checkers
    from conclave.workflows.evaluation.compare import Comparison, compare_records, compare_runs, mcnemar_exact
    from conclave.workflows.evaluation.datasets import DATASET_KINDS, Dataset, Item, load_dataset
    from conclave.workflows.evaluation.export import export_chains, export_traces
    from conclave.workflows.evaluation.harness import EvalConfig, EvalProgress, EvalResult, run_eval
    from conclave.workflows.evaluation.scorers import SCORERS

_WHERE = {
    "Comparison": "compare",
    "compare_records": "compare",
    "compare_runs": "compare",
    "mcnemar_exact": "compare",
    "DATASET_KINDS": "datasets",
    "Dataset": "datasets",
    "Item": "datasets",
    "load_dataset": "datasets",
    "export_chains": "export",
    "export_traces": "export",
    "EvalConfig": "harness",
    "EvalProgress": "harness",
    "EvalResult": "harness",
    "run_eval": "harness",
    "SCORERS": "scorers",
}

__all__ = [
    "DATASET_KINDS",
    "SCORERS",
    "Comparison",
    "Dataset",
    "EvalConfig",
    "EvalProgress",
    "EvalResult",
    "Item",
    "compare_records",
    "compare_runs",
    "export_chains",
    "export_traces",
    "load_dataset",
    "mcnemar_exact",
    "run_eval",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

"""The evaluation harness: data sets, scorers, the method x model matrix, the response cache, reports, comparison."""

from conclave.workflows.evaluation.compare import Comparison, compare_records, compare_runs, mcnemar_exact
from conclave.workflows.evaluation.datasets import DATASET_KINDS, Dataset, Item, load_dataset
from conclave.workflows.evaluation.export import export_chains, export_traces
from conclave.workflows.evaluation.harness import EvalConfig, EvalProgress, EvalResult, run_eval
from conclave.workflows.evaluation.scorers import SCORERS

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

"""Evaluation (§4.1 "Metrics"): classification accuracy and few-shot linear accuracy."""

from vitkit.evaluate.fewshot import FewShotResult, fewshot_evaluate
from vitkit.evaluate.metrics import Evaluation, check_labels, evaluate, save_confusion_matrix

__all__ = ["Evaluation", "FewShotResult", "check_labels", "evaluate", "fewshot_evaluate", "save_confusion_matrix"]

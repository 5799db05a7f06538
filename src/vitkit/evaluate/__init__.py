"""Evaluation (§4.1 "Metrics"): classification accuracy and few-shot linear accuracy."""

from vitkit.evaluate.fewshot import FewShotResult, fewshot_evaluate
from vitkit.evaluate.metrics import ClassMap, Evaluation, check_labels, class_map, evaluate, save_confusion_matrix

__all__ = ["ClassMap", "Evaluation", "FewShotResult", "check_labels", "class_map", "evaluate", "fewshot_evaluate",
           "save_confusion_matrix"]

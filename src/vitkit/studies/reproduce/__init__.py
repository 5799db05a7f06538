"""The paper's claims in miniature: ``vitkit reproduce`` reruns its key experiments at laptop scale.

One module per claim (its experiment and the rule of its verdict): :mod:`~vitkit.studies.reproduce.posemb`
(Table 8), :mod:`~vitkit.studies.reproduce.data_size` (Fig. 3/4), :mod:`~vitkit.studies.reproduce.compute`
(Fig. 5), :mod:`~vitkit.studies.reproduce.classifier` (Fig. 9), :mod:`~vitkit.studies.reproduce.attention_distance`
(Fig. 7), :mod:`~vitkit.studies.reproduce.self_supervision` (§4.6) and
:mod:`~vitkit.studies.reproduce.small_data` (the ``--recipe small-data`` preset's measurements). The
shared machinery is :mod:`~vitkit.studies.reproduce.lab`, the statistics and verdict rules
:mod:`~vitkit.studies.reproduce.stats`, the report :mod:`~vitkit.studies.reproduce.report`.

    >>> from vitkit.studies.reproduce import reproduce
    >>> document = reproduce("repro-out", budget="small")    # report.html, report.json, summary.md
    >>> [(c["id"], c["verdict"]) for c in document["claims"]]
"""

from vitkit.studies.reproduce.budget import BUDGETS, Budget
from vitkit.studies.reproduce.runner import CLAIMS, reproduce

__all__ = ["BUDGETS", "CLAIMS", "Budget", "reproduce"]

"""The paper's claims in miniature: ``vitkit reproduce`` reruns its key experiments at laptop scale.

One module per claim (its experiment and the rule of its verdict): :mod:`~vitkit.reproduce.posemb`
(Table 8), :mod:`~vitkit.reproduce.data_size` (Fig. 3/4), :mod:`~vitkit.reproduce.compute`
(Fig. 5), :mod:`~vitkit.reproduce.classifier` (Fig. 9), :mod:`~vitkit.reproduce.attention_distance`
(Fig. 7), :mod:`~vitkit.reproduce.self_supervision` (§4.6) and
:mod:`~vitkit.reproduce.small_data` (the ``--recipe small-data`` preset's measurements). The
shared machinery is :mod:`~vitkit.reproduce.lab`, the statistics and verdict rules
:mod:`~vitkit.reproduce.stats`, the report :mod:`~vitkit.reproduce.report`.

    >>> from vitkit.reproduce import reproduce
    >>> document = reproduce("repro-out", budget="small")    # report.html, report.json, summary.md
    >>> [(c["id"], c["verdict"]) for c in document["claims"]]
"""

from vitkit.reproduce.budget import BUDGETS, Budget
from vitkit.reproduce.runner import CLAIMS, reproduce

__all__ = ["BUDGETS", "CLAIMS", "Budget", "reproduce"]

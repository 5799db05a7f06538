"""``vitkit bench``: how fast a ViT runs on this machine, against its matmul peak and transformers.

    >>> from vitkit.deploy.bench import BenchSettings, run_bench
    >>> report = run_bench(vitkit.create_model("ViT-S/16"), BenchSettings(rows=["fp32", "int8", "transformers"]))

Modules: :mod:`~vitkit.deploy.bench.peak` (the matmul peak), :mod:`~vitkit.deploy.bench.timing` (clocks,
interleaved rounds, memory), :mod:`~vitkit.deploy.bench.peer` (transformers' ViT with the same weights),
:mod:`~vitkit.deploy.bench.runners` (the rows; :func:`register_runner` adds a runtime),
:mod:`~vitkit.deploy.bench.suite` (the measurements and the report).
"""

from vitkit.deploy.bench.peak import matmul_peak
from vitkit.deploy.bench.peer import transformers_peer
from vitkit.deploy.bench.runners import register_runner, registered_runners
from vitkit.deploy.bench.suite import REPORT_SCHEMA, SCHEMA, BenchSettings, check_report, run_bench

__all__ = ["REPORT_SCHEMA", "SCHEMA", "BenchSettings", "check_report", "matmul_peak", "register_runner",
           "registered_runners", "run_bench", "transformers_peer"]

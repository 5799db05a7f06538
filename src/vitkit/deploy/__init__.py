"""Ways out of vitkit to the runtimes models are deployed with: :mod:`vitkit.deploy.onnx` (which
registers the ``onnx`` checkpoint dialect, :mod:`vitkit.checkpoints.dialect`)."""

from vitkit.deploy import onnx  # noqa: F401  (registers the onnx dialect)

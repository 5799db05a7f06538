"""Ways out of vitkit to the runtimes models are deployed with: :mod:`vitkit.deploy.onnx`."""

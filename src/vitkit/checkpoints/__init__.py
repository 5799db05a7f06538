"""Checkpoint dialects: one module per format, each mapping its names onto vitkit's model."""

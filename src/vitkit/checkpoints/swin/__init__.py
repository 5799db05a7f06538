"""src/vitkit/checkpoints/swin"""

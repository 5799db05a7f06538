"""src/vitkit/models/swin"""

"""src/vitkit/checkpoints/vit"""

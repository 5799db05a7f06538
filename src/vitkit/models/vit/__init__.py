"""src/vitkit/models/vit"""

"""src/vitkit/studies"""

"""src/vitkit/models/bit"""

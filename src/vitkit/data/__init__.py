"""Data: image sources (folders, CIFAR, arrays, embedded sets) and the transforms of §4.1/B.1."""

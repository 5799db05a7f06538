"""The package version, in a module of its own so that any room can read it without the package top."""

__version__ = "0.1.0"

"""The NumPy reference engine: readable, complete, and the oracle the other engines are tested against."""

from .mlp import NumpyBackend

BACKEND = NumpyBackend()

__all__ = ["BACKEND", "NumpyBackend"]

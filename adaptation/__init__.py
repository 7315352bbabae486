"""Test-time adaptation around any solver: adapters and the TTT schemes."""
from adaptation.base import AdaptedAlgorithm, Adapter

__all__ = ["AdaptedAlgorithm", "Adapter"]

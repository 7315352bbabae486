"""Test-time adaptation around any solver: adapters and the TTT schemes."""
from adaptation.base import DEGRADATION, MASK_SCHEME, AdaptedAlgorithm, Adapter, Capability, Need

__all__ = ["AdaptedAlgorithm", "Adapter", "Capability", "DEGRADATION", "MASK_SCHEME", "Need"]

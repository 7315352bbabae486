"""The prior fingerprint recorded with each run (the leaderboard's key for a checkpoint); it lives in
priors/fingerprint.py so that priors (the ONNX cache of priors/backends.py) can key files by it too."""
from priors.fingerprint import prior_fingerprint

__all__ = ["prior_fingerprint"]

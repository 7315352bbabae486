"""Tests of priors: denoisers, networks, checkpoints and training."""

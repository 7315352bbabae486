"""Tests of adaptation: sampler and network adapters, TTT schemes, patients."""

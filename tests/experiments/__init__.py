"""Tests of the experiment drivers under benchmarks/experiments (marked `experiments`)."""

"""Hydra configs shipped as package data: problem/, algorithm/, prior/, adapter/, dataset/, shift/."""
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
# the key of a configs/sources.yaml entry that names the diffusion solvers' source prior under a shift (the other keys
# name the end-to-end networks' source models); read by benchmarks.config and, without hydra, by `bench list`
SOURCE_PRIOR = "prior"

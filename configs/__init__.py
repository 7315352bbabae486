"""Hydra configs shipped as package data: problem/, algorithm/, prior/, adapter/, dataset/, shift/."""
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent

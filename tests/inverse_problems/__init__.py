"""Tests of inverse_problems: operators, problems, datasets and readers."""

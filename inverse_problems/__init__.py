"""Forward operators, problems, datasets, phantoms and file readers.

Knows nothing of priors, algorithms, adaptation or the harness.
"""
from inverse_problems.base import SVD, ForwardOperator, Problem, ProblemInstance

__all__ = ["SVD", "ForwardOperator", "Problem", "ProblemInstance"]

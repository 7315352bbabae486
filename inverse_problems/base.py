"""The plugin API's operator and problem interfaces, kept at their first import path for published plugins.

The definitions live in `inverse_problems.operators.base` (operators) and `inverse_problems.problems.base`
(problems); import them from there in new code.
"""
from inverse_problems.operators.base import SVD, ForwardOperator
from inverse_problems.problems.base import Problem, ProblemInstance, adjoint_quantile, check_int, check_number

__all__ = ["SVD", "ForwardOperator", "Problem", "ProblemInstance", "adjoint_quantile", "check_int", "check_number"]

"""The plugin API's operator and problem interfaces, kept at their first import path for published plugins.

The definitions live in `inverse_problems.operators.base` (operators) and `inverse_problems.problems.base`
(problems); import them from there in new code. The per-sample random draws (`Randomness`, `randn`, `rand`: row k
from sample k's generator, docs/design.md "Randomness") are re-exported for plugin problems that simulate their own
noise, and `Item`, the typed dict every dataset's `__getitem__` returns (a plugin dataset extends it with its keys).
"""
from inverse_problems.operators.base import SVD, ForwardOperator
from inverse_problems.data.base import Item
from inverse_problems.operators.random import Randomness, rand, randn
from inverse_problems.problems.base import Problem, ProblemInstance, adjoint_quantile, check_int, check_number

__all__ = ["SVD", "ForwardOperator", "Item", "Problem", "ProblemInstance", "Randomness", "adjoint_quantile", "check_int",
           "check_number", "rand", "randn"]

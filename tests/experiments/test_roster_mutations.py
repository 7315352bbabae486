"""The roster's mutation check (benchmarks/experiments/roster_mutations.py) keeps up with the solvers' code: every
solver of the roster has one mutation, whose original line occurs exactly once in the current file and whose -k key
selects at least one of its exact tests; the committed results say every mutation was caught."""
from __future__ import annotations

import json

from benchmarks.experiments.roster_mutations import MUTATIONS, RESULTS, ROOT, TESTS

ROSTER = {"ddnm", "pigdm", "reddiff", "pnpdm", "lgd", "score-mri", "csgm"}


def test_every_roster_solver_has_a_mutation_of_its_current_code():
    assert {m[0] for m in MUTATIONS} == ROSTER
    tests = (ROOT / TESTS).read_text()
    for solver, file, old, new, _, key in MUTATIONS:
        text = (ROOT / file).read_text()
        assert text.count(old) == 1, (solver, file, old)
        assert old != new and text.replace(old, new) != text
        assert f"def test_{key}" in tests, (solver, key)


def test_the_committed_results_caught_every_mutation():
    rows = json.loads((RESULTS / "roster_mutations.json").read_text())["mutations"]
    assert {r["solver"] for r in rows} == ROSTER
    assert all(r["caught"] and r["failed_tests"] for r in rows), [r["solver"] for r in rows if not r["caught"]]

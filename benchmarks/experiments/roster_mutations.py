"""Do the roster's exact tests notice a wrong update rule? One mutation per solver, each run against its exact tests.

For each solver of the roster (issue 28), one line of its update rule is changed (a dropped factor, a misplaced
sigma, a wrong noise scale: what a port gets wrong), in a copy of the product packages and tests in a temporary
folder (the working tree is never touched), and `pytest tests/algorithms/test_solvers_roster_exact.py -k KEY` runs
there. A mutation is caught when at least one test fails; the unmutated copy must pass first. Results go to
benchmarks/results/roster_mutations.json.

    python benchmarks/experiments/roster_mutations.py
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
TESTS = "tests/algorithms/test_solvers_roster_exact.py"
COPY = ("algorithms", "inverse_problems", "priors", "adaptation", "tests", "configs", "pyproject.toml")
# solver, file, the original text (must occur once), the mutant, what it breaks, pytest -k
MUTATIONS = [
    ("ddnm", "algorithms/diffusion/ddnm.py", "x0_bar - lam * torch.where(obs", "x0_bar - 0.9 * lam * torch.where(obs",
     "the range-null-space correction takes 90 % of A^+ (y - A x̂0)", "ddnm"),
    ("pigdm", "algorithms/diffusion/pigdm.py", "v = pinv_guidance(operator, y - operator.forward(x0)",
     "v = pinv_guidance(operator, 0.9 * (y - operator.forward(x0))", "the guidance's residual scaled by 0.9", "pigdm"),
    ("reddiff", "algorithms/diffusion/reddiff.py", "return self.obs_weight * data + self.lam",
     "return self.obs_weight * 0.5 * data + self.lam", "the factor 2 of d/dmu ||A mu - y||^2 dropped", "reddiff"),
    ("pnpdm", "algorithms/diffusion/pnpdm.py", "prec = w * s**2 + 1.0 / rho**2", "prec = w * s**2 + 1.0 / rho",
     "the likelihood step's coupling precision 1/rho for 1/rho^2", "pnpdm"),
    ("lgd", "algorithms/diffusion/lgd.py", "r = sigma / (1 + sigma**2) ** 0.5", "r = sigma",
     "the Monte Carlo spread r_t = sigma for sigma / sqrt(1 + sigma^2)", "lgd"),
    ("score-mri", "algorithms/diffusion/score_mri.py", "x = self.dc(x_mean + (sg**2 - sn**2) ** 0.5 * randn",
     "x = self.dc(x_mean + 0.7 * (sg**2 - sn**2) ** 0.5 * randn", "the predictor's noise scaled by 0.7", "score_mri"),
    ("csgm", "algorithms/diffusion/csgm.py", "+ (2 * eta) ** 0.5 * randn(x, generator)",
     "+ eta ** 0.5 * randn(x, generator)", "the Langevin noise sqrt(eta) for sqrt(2 eta)", "csgm"),
]


def pytest(where: Path, key: str) -> tuple[int, str, list[str]]:
    """Run the exact tests matching key in `where`: return code, pytest's last line, the failed test ids."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TESTS, "-k", key], cwd=where,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(where)})
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    failed = [line.split(" - ")[0].removeprefix("FAILED ").removeprefix(TESTS + "::") for line in lines
              if line.startswith("FAILED")]
    return r.returncode, lines[-1] if lines else r.stderr.strip()[-300:], failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="solvers to mutate (default: all seven)")
    ap.add_argument("--out", type=Path, default=RESULTS / "roster_mutations.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="roster-mutations-") as tmp:
        where = Path(tmp)
        for name in COPY:
            src = ROOT / name
            (shutil.copytree(src, where / name, ignore=shutil.ignore_patterns("__pycache__", "weights"))
             if src.is_dir() else shutil.copy2(src, where / name))
        for solver, file, old, new, what, key in MUTATIONS:
            if args.only and solver not in args.only:
                continue
            path = where / file
            text = path.read_text()
            if text.count(old) != 1:
                raise SystemExit(f"{file}: the line to mutate ({old!r}) occurs {text.count(old)} times, not once; "
                                 "update MUTATIONS in this script to the solver's current code")
            rc0, line0, _ = pytest(where, key)
            if rc0 != 0:
                raise SystemExit(f"the unmutated {solver} tests fail ({line0}); fix them before judging mutations")
            path.write_text(text.replace(old, new))
            try:
                rc, line, failed = pytest(where, key)
            finally:
                path.write_text(text)
            rows.append({"solver": solver, "file": file, "original": old, "mutant": new, "breaks": what,
                         "unmutated": line0, "mutated": line, "caught": rc != 0, "failed_tests": failed})
            print(f"{solver:10s} {'caught' if rc else 'MISSED'}: {what}; {line}", flush=True)
    args.out.write_text(json.dumps({"command": "python benchmarks/experiments/roster_mutations.py",
                                    "date_utc": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
                                    "tests": TESTS, "mutations": rows}, indent=1) + "\n")
    missed = [r["solver"] for r in rows if not r["caught"]]
    print(f"{len(rows) - len(missed)} of {len(rows)} mutations caught" + (f"; missed: {missed}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare two trees of run directories: samples.jsonl metrics (all fields but timing/memory) and reconstructions bit for bit."""
import hashlib, json, sys
from pathlib import Path
SKIP = {"seconds", "peak_memory_mb", "cpu_seconds", "adapt_seconds", "wall_seconds"}
a, b = Path(sys.argv[1]), Path(sys.argv[2])
runs = sorted(p.parent.relative_to(a) for p in a.rglob("samples.jsonl"))
bad = 0; n_samples = n_files = 0
for r in runs:
    la = [json.loads(l) for l in (a / r / "samples.jsonl").read_text().splitlines()]
    pb = b / r / "samples.jsonl"
    if not pb.exists():
        print(f"MISSING {r}"); bad += 1; continue
    lb = [json.loads(l) for l in pb.read_text().splitlines()]
    strip = lambda d: {k: v for k, v in d.items() if k not in SKIP}
    same = [strip(x) for x in la] == [strip(x) for x in lb]
    files = sorted(p.relative_to(a / r) for p in (a / r).rglob("*.npy"))
    diff_files = [f for f in files if hashlib.sha256((a / r / f).read_bytes()).digest()
                  != hashlib.sha256((b / r / f).read_bytes()).digest()] if all((b / r / f).exists() for f in files) else ["missing"]
    n_samples += len(la); n_files += len(files)
    ok = same and not diff_files
    bad += not ok
    print(f"{'identical' if ok else 'DIFFERENT'}  {str(r):28s} {len(la)} samples, {len(files)} arrays"
          + ("" if same else "  (metrics differ)") + (f"  (arrays differ: {diff_files[:3]})" if diff_files else ""))
print(f"{len(runs)} runs, {n_samples} samples, {n_files} arrays: {len(runs) - bad} identical, {bad} different")

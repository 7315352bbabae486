"""Convert an EDM network pickle (network-snapshot-*.pkl, edm-*.pkl) into a state dict + config the `edm` prior loads.

EDM pickles hold whole modules saved through EDM's `torch_utils.persistence`; unpickling them RUNS WHATEVER CODE THE
FILE HOLDS (a crafted file can do anything your account can) and needs EDM's `torch_utils` and `dnnlib` importable.
The rest of the suite never unpickles a file. This script refuses to, unless you pass --trust-pickle, stating that
you have verified where the file comes from (e.g. its sha256, printed by the refusal, against the publisher's);
better still, convert inside a throwaway container. With the flag it unpickles once, with YOUR copy of the EDM
source on sys.path, and writes

    OUT.pt    {"ema": state_dict}             (read by the prior with torch.load(weights_only=True))
    OUT.json  {"class_name": ..., **init_kwargs, "source": PKL}   (the constructor arguments EDM recorded)

Usage:
    python benchmarks/experiments/convert_edm_pickle.py --trust-pickle --edm-src PATH/TO/edm edm-ffhq-64x64-uncond-vp.pkl ffhq64.pt
    bench run --problem ... --prior edm prior.path=ffhq64.pt          # the json beside it names the architecture
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import torch


TRUST_FLAG = "--trust-pickle"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(pkl: Path, out: Path, edm_src: Path, key: str = "ema", trusted: bool = False) -> dict[str, Any]:
    """Unpickle `pkl[key]` with `edm_src` importable; save its state dict to `out` and its config to out.json.

    Refused (SystemExit, nothing read but the file's hash) unless `trusted`: unpickling runs the file's code."""
    if not pkl.is_file():
        raise SystemExit(f"{pkl}: no such file")
    if not trusted:
        raise SystemExit(f"refusing to unpickle {pkl}: unpickling runs whatever code the file holds. Pass "
                         f"{TRUST_FLAG} only if you have verified where it comes from (sha256 {sha256(pkl)}: compare "
                         f"it with the publisher's), ideally inside a throwaway container")
    if not (edm_src / "torch_utils").is_dir():
        raise SystemExit(f"--edm-src {edm_src}: no torch_utils/ there; give the root of a checkout of NVlabs/edm")
    sys.path.insert(0, str(edm_src))
    try:
        with open(pkl, "rb") as fh:
            data = pickle.load(fh)
    finally:
        sys.path.remove(str(edm_src))
    net = data[key] if isinstance(data, dict) else data
    if isinstance(data, dict) and key not in data:
        raise SystemExit(f"{pkl}: no entry {key!r}; entries: {sorted(data)}")
    kwargs = getattr(net, "init_kwargs", None)
    if kwargs is None or getattr(net, "init_args", ()):
        raise SystemExit(f"{pkl}[{key!r}] is a {type(net).__name__} without EDM's recorded constructor keywords "
                         f"(init_kwargs); it was not saved by EDM's persistence: save its state_dict and write the json by hand")
    config = {"class_name": type(net).__name__, **dict(kwargs), "source": str(pkl)}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"ema": state}, out)
    out.with_suffix(".json").write_text(json.dumps(config, indent=1, default=list) + "\n")
    return config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Unpickling runs the code a pickle holds: without --trust-pickle nothing is "
                                        "unpickled (the refusal prints the file's sha256 to check against the "
                                        "publisher's).")
    ap.add_argument("pickle", type=Path, help="the EDM network pickle")
    ap.add_argument("out", type=Path, help="the state-dict file to write (a json of the same stem goes beside it)")
    ap.add_argument("--edm-src", type=Path, required=True, help="root of your checkout of NVlabs/edm (has torch_utils/)")
    ap.add_argument("--key", default="ema", help="the pickle's entry holding the network (default: ema)")
    ap.add_argument(TRUST_FLAG, action="store_true",
                    help="state that you trust the file (verified origin): unpickling it RUNS THE CODE IT HOLDS; "
                         "without this flag the converter refuses and unpickles nothing")
    args = ap.parse_args(argv)
    config = convert(args.pickle, args.out, args.edm_src, args.key, trusted=args.trust_pickle)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({config['class_name']}, "
          f"{config.get('model_type', '?')}, {config.get('img_resolution')}px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

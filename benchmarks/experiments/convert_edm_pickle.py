"""Convert an EDM network pickle (network-snapshot-*.pkl, edm-*.pkl) into a state dict + config the `edm` prior loads.

EDM pickles hold whole modules saved through EDM's `torch_utils.persistence`; unpickling them runs code and
needs EDM's `torch_utils` and `dnnlib` importable. This script does that once, with YOUR copy of the EDM
source on sys.path (only ever unpickle files you trust), and writes

    OUT.pt    {"ema": state_dict}             (read by the prior with torch.load(weights_only=True))
    OUT.json  {"class_name": ..., **init_kwargs, "source": PKL}   (the constructor arguments EDM recorded)

Usage:
    python benchmarks/experiments/convert_edm_pickle.py --edm-src PATH/TO/edm edm-ffhq-64x64-uncond-vp.pkl ffhq64.pt
    bench run --problem ... --prior edm prior.path=ffhq64.pt          # the json beside it names the architecture
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import torch


def convert(pkl: Path, out: Path, edm_src: Path, key: str = "ema") -> dict[str, Any]:
    """Unpickle `pkl[key]` with `edm_src` importable; save its state dict to `out` and its config to out.json."""
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pickle", type=Path, help="the EDM network pickle")
    ap.add_argument("out", type=Path, help="the state-dict file to write (a json of the same stem goes beside it)")
    ap.add_argument("--edm-src", type=Path, required=True, help="root of your checkout of NVlabs/edm (has torch_utils/)")
    ap.add_argument("--key", default="ema", help="the pickle's entry holding the network (default: ema)")
    args = ap.parse_args(argv)
    config = convert(args.pickle, args.out, args.edm_src, args.key)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({config['class_name']}, "
          f"{config.get('model_type', '?')}, {config.get('img_resolution')}px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ship a training checkpoint's EMA weights as a packaged prior (`priors/weights/NAME`), as `bench train-prior`
exports them at the end of a run: model.pt ({"ema": state dict}), model.json (EDMPrecond's arguments), the
training directory's metadata.json (with `load_with` naming the packaged prior), loss.png and a PF-ODE sample
grid (samples.png, the training's sample settings).

    python -m benchmarks.experiments.ship_prior --training benchmarks/results/training/brain-64 --name brain-64
        [--weights-root priors/weights]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from priors.edm import build_network
from priors.training.common import checkpoint_path, load_checkpoint, plot_loss
from priors.training.loop import sample_grid, save_edm_model

REPO = Path(__file__).resolve().parents[2]


def ship(training: Path, name: str, weights_root: Path = REPO / "priors" / "weights") -> Path:
    """Write weights_root/name from training's checkpoint (EDM recipe only); returns that directory."""
    meta = json.loads((training / "metadata.json").read_text())
    state = load_checkpoint(checkpoint_path(training))
    if meta.get("recipe") != "edm":
        raise ValueError(f"{training}: recipe {meta.get('recipe')!r}; only EDM priors ship as model.pt + model.json")
    if int(state["step"]) != int(meta["steps"]):
        raise ValueError(f"{training}: checkpoint at step {state['step']} but metadata.json says {meta['steps']}; "
                         f"re-run `bench train-prior ... --resume` to the checkpoint's step first")
    net = build_network(meta["network"], "--recipe edm")
    net.load_state_dict(state["ema"]["model"])
    net.eval()
    out = weights_root / name
    save_edm_model(out, net, meta["network"])
    meta = {**meta, "load_with": f"--prior {name}", "weights_bytes": (out / "model.pt").stat().st_size}
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    plot_loss(state["losses"], out / "loss.png", "EDM loss")
    cfg = meta["config"]
    with torch.no_grad():
        sample_grid(net, None, int(cfg.get("samples", 16)), int(cfg.get("sample_steps", 18)), int(cfg.get("seed", 0)),
                    out / "samples.png")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--training", type=Path, required=True, help="a `bench train-prior --out` directory")
    ap.add_argument("--name", required=True, help="the packaged prior's name (priors/weights/NAME)")
    ap.add_argument("--weights-root", type=Path, default=REPO / "priors" / "weights",
                    help="where the packaged priors live (default: this checkout's priors/weights)")
    args = ap.parse_args(argv)
    print(ship(args.training, args.name, args.weights_root))


if __name__ == "__main__":
    main()

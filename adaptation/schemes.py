"""How adapter state flows between test batches (after TTT for 4D interpolation, Zhang et al.).

- naive: adapt on the whole test set first (one pass, results discarded), then reconstruct every
  batch with the adapted state frozen.
- online: every batch starts from the pretrained state (state reset before each batch).
- minibatch: the adapted state is carried from batch to batch (theta_i from theta_{i-1}).

The runner (benchmarks.runner.execute) applies them: naive calls `set_adapting(True)`, runs every batch once,
then `set_adapting(False)` and reconstructs; `before_batch()` resets for online. State that an adapter learns
on a per-batch object (an operator's physical parameters) is kept in the adapter's own state (its
`get_extra_state`), so it is carried or reset with the rest.
"""
from __future__ import annotations

import copy

from adaptation.base import Adapter

SCHEMES = ("naive", "online", "minibatch")


class Scheme:
    """Holds the pretrained state of the adapters and applies one scheme's rule around each batch."""

    def __init__(self, name: str, adapters: list[Adapter]) -> None:
        if name not in SCHEMES:
            raise ValueError(f"unknown scheme {name!r}; choose one of {', '.join(SCHEMES)}")
        self.name = name
        self.adapters = adapters
        self.pretrained = [copy.deepcopy(a.state_dict()) for a in adapters]

    @property
    def needs_warmup(self) -> bool:
        """Naive needs a first adaptation pass over all test batches."""
        return self.name == "naive" and bool(self.adapters)

    def reset(self) -> None:
        """Every adapter back to its pretrained state: `reset()` drops what it built lazily for a batch (an
        operator-sized net, carried physical values), then the pretrained weights are loaded."""
        for a, state in zip(self.adapters, self.pretrained):
            a.reset()
            a.load_state_dict(state)

    def set_adapting(self, on: bool) -> None:
        for a in self.adapters:
            a.adapting = on

    def before_batch(self) -> None:
        if self.name == "online":
            self.reset()

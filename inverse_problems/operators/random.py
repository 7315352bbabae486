"""Per-sample randomness (docs/design.md, "Randomness"): every draw for sample k comes from sample k's own generator.

A batch carries a `SampleGenerators` (one `torch.Generator` per sample, seeded from (run seed, sample id));
the draw helpers below take a batched shape (B, ...) and draw row k from generator k. Sample k then sees the
same numbers whatever else is in its batch, so the batch size, the number of processes and the point where a
resume restarted never change a number. A plain `torch.Generator` (or None: torch's global generator) is
accepted everywhere too, for notebook use: it draws the whole batch at once, as torch does.

Streams an adapter needs of its own (a hold-out mask, a power-iteration start) come from `spawn`, which derives
new generators from the given ones and a tag without consuming their state.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence, Union

import torch
from torch import Tensor


def item_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (not Python's salted hash)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class SampleGenerators(torch.Generator):
    """One torch.Generator per sample of a batch, in batch order.

    It is itself a torch.Generator too (seeded from all the samples' seeds), so code that draws from it directly,
    e.g. a plugin's `torch.randn(..., generator=g)`, still runs: it gets one stream for the whole batch, which
    depends on the batch's composition. Per-sample numbers come from the helpers of this module.
    """

    def __new__(cls, generators: Sequence[torch.Generator]) -> "SampleGenerators":
        gens = list(generators)
        if not gens:
            raise ValueError("SampleGenerators needs at least one generator (one per sample)")
        self = super().__new__(cls, device=gens[0].device)
        self.manual_seed(item_seed("batch", *[g.initial_seed() for g in gens]))
        return self

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    @classmethod
    def seeded(cls, seed: int, ids: Iterable[object], device: torch.device | str = "cpu") -> "SampleGenerators":
        """Generators seeded from (seed, id) of each sample, e.g. the run seed and the dataset item's id."""
        return cls([torch.Generator(device=device).manual_seed(item_seed("sample", seed, i)) for i in ids])

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, k: int) -> torch.Generator:
        return self.generators[k]

    def spawn(self, *tag: object) -> "SampleGenerators":
        """Independent per-sample streams named by `tag`, seeded from each generator's initial seed."""
        return SampleGenerators([torch.Generator(device=g.device).manual_seed(item_seed(g.initial_seed(), *tag))
                                 for g in self.generators])


Randomness = Union[torch.Generator, SampleGenerators, None]


def spawn(generator: Randomness, *tag: object, device: torch.device | str = "cpu") -> Randomness:
    """A stream of its own named by `tag`: per sample for SampleGenerators, else one generator seeded from the
    given generator's initial seed (or from the tag alone when there is none). The given state is left alone."""
    if isinstance(generator, SampleGenerators):
        return generator.spawn(*tag)
    if isinstance(generator, torch.Generator):
        return torch.Generator(device=generator.device).manual_seed(item_seed(generator.initial_seed(), *tag))
    return torch.Generator(device=device).manual_seed(item_seed(*tag))


def _draw(fn, shape: Sequence[int], generator: Randomness, device, dtype: torch.dtype | None) -> Tensor:
    """fn(shape, generator, device, dtype): whole batch from a plain generator, row k from generator k otherwise."""
    shape = tuple(int(s) for s in shape)
    if not isinstance(generator, SampleGenerators):
        on = generator.device if generator is not None else device
        return fn(shape, generator, on, dtype).to(device)
    if not shape or shape[0] != len(generator):
        raise ValueError(f"a draw of shape {shape} from {len(generator)} per-sample generators: the first dimension "
                         f"must be the batch ({len(generator)})")
    return torch.stack([fn(shape[1:], g, g.device, dtype) for g in generator.generators]).to(device)


def randn(shape: Sequence[int], generator: Randomness = None, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal draws of `shape` (row k from generator k for SampleGenerators), returned on `device`."""
    return _draw(lambda s, g, on, dt: torch.randn(s, generator=g, device=on, dtype=dt), shape, generator, device, dtype)


def rand(shape: Sequence[int], generator: Randomness = None, device: torch.device | str | None = None,
         dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform [0, 1) draws of `shape` (row k from generator k for SampleGenerators), returned on `device`."""
    return _draw(lambda s, g, on, dt: torch.rand(s, generator=g, device=on, dtype=dt), shape, generator, device, dtype)


def randint(low: int, high: int, shape: Sequence[int], generator: Randomness = None,
            device: torch.device | str | None = None) -> Tensor:
    """Integers uniform in [low, high) of `shape` (row k from generator k for SampleGenerators)."""
    return _draw(lambda s, g, on, dt: torch.randint(low, high, s, generator=g, device=on), shape, generator, device,
                 None)


def randn_like(like: Tensor, generator: Randomness = None) -> Tensor:
    """Standard normal noise shaped like `like` (real dtype of it), on its device."""
    dtype = like.real.dtype if like.is_complex() else like.dtype
    return randn(like.shape, generator, like.device, dtype)

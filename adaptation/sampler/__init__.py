"""Adapters that hook into a diffusion sampler's steps: TDA, AIR, prior-affine."""

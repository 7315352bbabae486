"""Training diffusion priors (bench train-prior)."""

"""Training diffusion priors (`bench train-prior`), and the training core that network training shares.

config   TrainConfig, presets and choices, the stored-configuration helpers (imports no torch: the CLI reads it)
losses   the DDPM and EDM losses
common   what prior and network training share: EMA, the step loop, the state file and resume checks, legs, plots
loop     train-prior's networks, data and training loop
"""

"""Diffusion solvers: DPS, DDRM, DAPS, DiffPIR, DiffDeuR and their shared data-consistency steps."""

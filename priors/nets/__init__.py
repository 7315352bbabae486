"""Denoiser networks: EDM's SongUNet/DhariwalUNet and ADM's UNetModel, written to load official weights."""

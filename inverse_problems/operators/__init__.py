"""Forward operators and their numerics: the physics (A, A^H, SVDs, masks, coils, ESPIRiT, FFT)."""

"""Classical solvers: zero-filled, CG-SENSE, L1-wavelet, TV and the MRSI baselines."""

"""Test-time adaptation of end-to-end networks: FINE, NR2N, SSDU, DIP-TTT, MR-INR, SST."""

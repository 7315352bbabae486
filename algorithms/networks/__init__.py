"""End-to-end reconstruction networks (U-Net, VarNet) and their supervised training."""

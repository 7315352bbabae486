"""Readers of users' files: fastMRI h5, ISMRMRD raw, NIfTI volumes and image folders."""

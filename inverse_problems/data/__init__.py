"""Datasets: procedural phantoms, file readers (fastMRI, NIfTI, ISMRMRD, images) and shipped assets."""

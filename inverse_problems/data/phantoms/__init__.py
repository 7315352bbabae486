"""Procedural phantoms with tissue parameters: any contrast, any anatomy, no downloads."""

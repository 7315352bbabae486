"""Problems: one family per file; each builds an operator and a measurement from an item."""

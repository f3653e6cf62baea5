"""Building blocks of the zoo: masking, modalities, recurrent runs, layers, losses, translation."""

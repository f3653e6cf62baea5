"""Building blocks of the zoo: masking, modalities, recurrent runs, layers, losses, translation, and the
fine-tunable text encoder."""

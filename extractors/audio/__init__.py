"""Audio extractors: log-mel, MFCC + prosody (acoustic), chroma/contrast/tonnetz (tonal)."""

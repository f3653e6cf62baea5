"""Text extractors: transcripts with word timings (transcript) and transformer token embeddings (text)."""

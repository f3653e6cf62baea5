"""Visual extractors: face detection and tracking (face), facial-expression embeddings (fer)."""

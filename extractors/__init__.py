"""Feature extractors, one module per extractor behind `extractors.base.Extractor`; the table is `extractors.registry`."""

"""The model zoo: one module per published model; the table of names is `models.registry.MODELS`."""

"""Interoperability with the field's feature files: import CMU-MultimodalSDK computational sequences and MMSA feature
pickles into the cache as ordinary entries training reads unchanged, and export the cache to both layouts.

How a label row finds an imported entry (one lookup path, the one training uses): imports are written under the
registered extractors `imported_text|audio|visual` (`extractors/imported.py`), keyed by the row's id in place of
a media hash, under the `extraction.options.imported_<modality>` each import records in `CACHE/imports/sentiflow.yaml`.
`CACHE/imports/options.yaml` points `data.sources` (and, for word-aligned imports, `data.aligned_sources`) at them.
`sentiflow train --config CACHE/imports/sentiflow.yaml --options CACHE/imports/options.yaml` then builds the same
`FeatureLookup` keys from the label rows' ids (`<video>_<n>`).
"""

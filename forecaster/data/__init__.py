"""Data layer: files -> `Panel` -> borders -> scaling -> windows -> batches.

Modules (imported where needed; this package imports nothing, so `import forecaster.data` stays cheap):
`io` reads CSV/Parquet, `validate` checks a raw table, `panel` holds the canonical series and applies
`data.missing`, `splits` computes per-series borders, `scaling` standardises on training rows, `features`
derives calendar features, `windows` slices windows into batches, `datamodule` wires them for Lightning.
"""

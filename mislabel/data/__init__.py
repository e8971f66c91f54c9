"""Datasets, their on-disk formats, label noise, and the batches training reads."""

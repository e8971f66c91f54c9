"""Foundations every other part may import: user input and one-line errors, atomic files, the
dynamics format, run options, locks, progress, torch.distributed helpers.
"""

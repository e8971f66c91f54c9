"""The seed's ``losses`` module: the training losses live in ``mislabel/models/losses.py``."""
from mislabel.seed_layout import alias

alias(__name__, "mislabel.models.losses")

"""The seed's ``models`` package: the networks live in ``mislabel/models`` (see README, Layout)."""
from mislabel.seed_layout import alias

alias(__name__, "mislabel.models")

"""The seed's ``detector_model`` package: the detector and the baseline scores live in
``mislabel/scoring`` (see README, Layout)."""
from mislabel.seed_layout import alias

alias(__name__, "mislabel.scoring")

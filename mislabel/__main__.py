"""``python -m mislabel``: the ``mislabel`` command (``mislabel.commands.main``)."""
from mislabel.commands.main import main

main()

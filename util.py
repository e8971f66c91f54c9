"""The seed's ``util`` module: its helpers now live in ``mislabel/core`` (user input, atomic files,
the dynamics format) and are re-exported here for code written against the seed's layout."""
from mislabel.core.dynamics import *  # noqa: F403
from mislabel.core.files import *  # noqa: F403
from mislabel.core.user_input import *  # noqa: F403

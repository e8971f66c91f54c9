"""The training loop, the dynamics recorder, checkpoints, acceleration, and time budgets."""

"""Runs inside the training process; knows nothing of validators."""

"""How a training process starts: one narrow interface (submit, status, logs, cancel), several engines."""

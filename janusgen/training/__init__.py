"""Training: the loop (trainer), optimizer and schedule, checkpoints, distributed setup, logging."""

"""Training: the loop (trainer), optimizer and schedule, distributed setup, logging.

Checkpoints live in janusgen.checkpoint, below both training and decoding."""

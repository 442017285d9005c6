"""Training: the loop (trainer), the recipe around it (recipe: data, resume, run folder, build), optimizer and
schedule, distributed setup, logging.

Checkpoints live in janusgen.checkpoint, below both training and decoding."""

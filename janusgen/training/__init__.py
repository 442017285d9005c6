"""Training: the loop (trainer), the recipe around it (recipe: data, resume, build), the run folder's
layout (run_dir), what says whether a run learns (health), averaging, optimizer and schedule, distributed
setup, logging; TrainConfig (config).

Checkpoints live in janusgen.checkpoint, below both training and decoding."""

"""Learning: the REINFORCE objective and regularizers, the training loop, evaluation, checkpoints."""

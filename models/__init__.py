"""Meta-learners, the Conv-4 backbone, Omniglot data, episodic sampling, training and evaluation."""

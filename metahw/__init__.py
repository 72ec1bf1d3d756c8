"""metahw: meta-learners (few-shot learners) down to verified fixed-point hardware."""

__version__ = "0.1.0"

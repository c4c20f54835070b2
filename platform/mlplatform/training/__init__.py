"""Training: model fitting, evaluation, baselines, distributed torch on Ray Train."""

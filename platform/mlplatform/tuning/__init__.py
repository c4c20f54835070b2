"""Multi-pattern hyperparameter search on Ray Tune, recorded in the evaluation store (SPEC S3)."""

"""SHA-256-verified artifact storage on any pyarrow filesystem, and the model artifact format."""

"""Transformations shipped inside the model, data validation, dataset versions and feature views."""

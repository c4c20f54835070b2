"""Model families: torch MLP and sklearn estimators, saved in safe formats."""

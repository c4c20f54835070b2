"""Stable Serve deployment names: a Serve YAML's ``deployments:`` entries and the chaos tools address replicas
by them. The serving config itself is :class:`mlplatform.config.serve.ServeConfig`."""

from __future__ import annotations


def deployment_name(model_name: str) -> str:
    """Stable per-model deployment name, so a YAML ``deployments:`` entry can override its ``user_config``."""
    return f"Model_{model_name}"


def member_deployment_name(ref: str) -> str:
    """One deployment per distinct member ref (``churn:3`` -> ``Member_churn_3``), shared by ensembles."""
    return "Member_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in ref)


def ensemble_deployment_name(name: str) -> str:
    return f"Ensemble_{name}"

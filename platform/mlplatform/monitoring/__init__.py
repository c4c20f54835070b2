"""Monitoring (SPEC S8): reference profiles, drift, continuous evaluation, alerts, retraining decisions, reports.

Modules: ``reference`` (profile written at training time), ``drift``, ``evaluation`` (labels, decay, fairness),
``alerts`` (lifecycle, sinks), ``window``, ``check`` (one check of one version), ``retrain`` (the recommendation
and its guards), ``report`` (HTML + JSON). Levels and thresholds live in ``entities.levels`` and the typed
MonitorConfig in ``config.monitor``, so configs load without importing a stage.
"""

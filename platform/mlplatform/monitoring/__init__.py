"""Monitoring (SPEC S8): reference profiles, drift, continuous evaluation, alerts, retraining decisions, reports.

Modules: ``reference`` (profile written at training time), ``drift``, ``evaluation`` (labels, decay, fairness),
``levels`` + ``alerts`` (levels, lifecycle, sinks), ``config`` (MonitorConfig), ``window``, ``check`` (one check of
one version), ``retrain`` (the recommendation and its guards), ``report`` (HTML + JSON).
"""

"""How a model is fitted and judged, shared by the stages that fit models (training and tuning).

The stages orchestrate; this package holds the one implementation of each piece they have in common:

- :mod:`~mlplatform.learning.data`: load, split (seeded, recorded) and encode labels;
- :mod:`~mlplatform.models.losses` and :mod:`~mlplatform.learning.metrics`: losses and metrics by name;
- :mod:`~mlplatform.learning.torch_core`: the typed :class:`~mlplatform.learning.torch_core.TrainLoopConfig`, the
  optimizer and scheduler builders, and the per-epoch torch loop (gradient accumulation, AMP, clipping) that a
  Ray Train worker and a Tune trial both run;
- :mod:`~mlplatform.learning.sklearn_fit`: the sklearn fit-and-evaluate path;
- :mod:`~mlplatform.learning.gate` and :mod:`~mlplatform.learning.promotion`: baselines, the promotion gate and
  registration, the one ending of ``mlplatform train`` and ``mlplatform tune --register-best``.

It sits below the stages: nothing here imports ``training``, ``tuning``, ``batch``, ``serving`` or ``monitoring``,
so a stage that needs the training loop imports it from here instead of reaching into another stage.
"""

"""The web console over the evaluation store (``mlplatform ui``, and ``/console`` beside the model endpoint)."""

"""Online serving on Ray Serve: ``build_app(args)`` composes a FastAPI ingress with one deployment per model."""

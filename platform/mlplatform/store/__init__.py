"""The evaluation store: an abstract interface and its SQL implementation."""

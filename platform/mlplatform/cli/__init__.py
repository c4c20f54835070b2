"""The ``mlplatform`` command line: one module per noun."""

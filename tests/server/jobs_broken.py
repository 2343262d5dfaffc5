"""A job module that fails to import: ``gojob server`` must say so and exit non-zero."""

raise RuntimeError("this module is broken on purpose")

"""A job module that declares nothing: ``gojob server`` must refuse it."""

"""The version of gojob (one place: the package, the server and node records read it)."""

__version__ = "0.1.0"

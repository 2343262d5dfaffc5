"""Code generated from proto/ by gojob.server._gen: do not edit."""

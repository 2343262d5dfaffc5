"""Code generated from proto/job/v1/service.proto by gojob.server._gen: do not edit."""

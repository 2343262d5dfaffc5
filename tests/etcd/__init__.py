"""Tests of the etcd store (the conformance suite runs it too: tests/store)."""

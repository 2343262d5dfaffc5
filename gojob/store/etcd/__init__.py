"""The etcd v3 store (``etcd://host:port``): see :mod:`gojob.store.etcd.store`."""

from .store import EtcdStore as EtcdStore

__all__ = ["EtcdStore"]

"""A cloud under test: its target, its settings and one lazily opened connection."""

from __future__ import annotations

import threading

import openstack.connection

from e2etests import config as e2e_config
from e2etests.config import CloudSettings, CloudTarget, CloudUnavailable


class Cloud:
    """A cloud under test.

    ``id`` (the test id: name or ``name/region``), ``name``, ``slug`` (id safe for resource
    names), ``settings`` (the cloud's ``e2etests:`` block) and :meth:`connect`: an
    authenticated connection, opened on first use and kept. If the cloud cannot be reached or
    refuses the credentials, every ``connect`` raises the same :class:`CloudUnavailable`
    without asking Keystone again; other clouds are unaffected.
    """

    def __init__(self, target: CloudTarget) -> None:
        self.target = target
        self._conn: openstack.connection.Connection | None = None
        self._error: CloudUnavailable | None = None
        self._lock = threading.Lock()  # checks started ahead connect from their threads

    def __repr__(self) -> str:
        return f"Cloud({self.id!r})"

    @property
    def id(self) -> str:
        return self.target.id

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def slug(self) -> str:
        return self.target.slug

    @property
    def settings(self) -> CloudSettings:
        return self.target.settings

    def connect(self) -> openstack.connection.Connection:
        """The connection; raises :class:`CloudUnavailable` with the one-line reason."""
        with self._lock:
            if self._error is None and self._conn is None:
                try:
                    self._conn = e2e_config.connect(self.target)
                except CloudUnavailable as exc:
                    self._error = exc
            if self._error is not None:
                raise CloudUnavailable(str(self._error), misconfigured=self._error.misconfigured)
            assert self._conn is not None
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

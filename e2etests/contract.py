"""The result contract between a test run and its reporters: what a test's report carries.

The plugin's fixtures write these ``user_properties`` (:class:`e2etests.fixtures.E2EReport`),
:mod:`e2etests.results` reads them; both name them through :class:`Prop` only. They travel
as properties because that is what crosses from xdist workers to the controller and into
``junit.xml``.
"""

from __future__ import annotations

__all__ = ["Prop"]


class Prop:
    """Keys of the ``user_properties`` a test of the harness carries (written by the plugin)."""

    CLOUD = "e2e_cloud"  #: which cloud the test checked
    CHECK = "e2e_check"  #: which check it is
    PHASES = "e2e_phases"  #: seconds per phase, e.g. {"boot": 2.31}
    DURATION = "e2e_duration"  #: the check's own wall time when it ran ahead of its test
    CULPRIT = "e2e_culprit"  #: what is broken, one line
    EVIDENCE = "e2e_evidence"  #: the lines that prove it
    LEAK = "e2e_leak"  #: a server the check created may be left: the cleanup's failure
    UNREACHABLE = "e2e_unreachable"  #: the cloud itself cannot be used (keystone), one line
    CONFIG_SKIP = "e2e_config_skip"  #: the cloud is skipped by config: the reason
    QUARANTINE = "e2e_quarantine"  #: the cloud is quarantined by config: the reason
    #: the failure is the cloud's entry in clouds.yaml (flavor not found, credentials refused)
    MISCONFIGURED = "e2e_misconfigured"

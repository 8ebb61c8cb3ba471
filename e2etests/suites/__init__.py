"""The smoke suites: a bare ``pytest`` in a checkout, or ``pytest --pyargs e2etests.suites``."""

"""End-to-end smoke tests for OpenStack clouds."""

__version__ = "0.1.0"

"""Secrets and URL credentials are masked in every line the MQ checks print."""

from __future__ import annotations

from e2etests.mq.redact import MASK, describe, scrub

URL = "rabbit://openstack:Pa55w0rd@10.0.0.5:5672,openstack:Pa55w0rd@10.0.0.6:5672/nova"


def test_known_secrets_are_masked_longest_first() -> None:
    text = f"cannot use {URL} (password Pa55w0rd)"
    assert scrub(text, ["Pa55w0rd", URL]) == f"cannot use {MASK} (password {MASK})"


def test_url_credentials_are_masked_even_when_not_given() -> None:
    assert scrub("dial amqp://guest:guest@h:5672// failed") == "dial amqp://***@h:5672// failed"
    assert scrub("see https://user@example.org/x") == "see https://***@example.org/x"


def test_plain_text_is_kept_and_made_one_line() -> None:
    assert scrub("queue compute.h1 has\n 0 consumers", ["", "x-not-there"]) == (
        "queue compute.h1 has 0 consumers"
    )


def test_describe_names_the_exception_type() -> None:
    assert describe(ValueError(f"bad {URL}"), [URL]) == "ValueError: bad ***"
    assert describe(TimeoutError()) == "TimeoutError"

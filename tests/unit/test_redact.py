"""Secrets, URL credentials and tokens are masked in every line the harness prints or posts."""

from __future__ import annotations

import pytest

from e2etests.redact import MASK, clip, describe, message, one_line, redact, redact_line

URL = "rabbit://openstack:Pa55w0rd@10.0.0.5:5672,openstack:Pa55w0rd@10.0.0.6:5672/nova"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("rabbit://nova:s3cret@broker:5672/", "s3cret"),
        ("amqp://guest:guest@localhost//", "guest:guest"),
        ("https://admin:pw123@keystone:5000/v3", "pw123"),
        ("password=hunter2 and more", "hunter2"),
        ("{'password': 'hunter2'}", "hunter2"),
        ('{"admin_password": "hunter2"}', "hunter2"),
        ("token xoxb-123-456-abcdef", "xoxb-123"),
        ("Authorization: Bearer abc.def.ghi", "abc.def"),
        ("OS_PASSWORD: hunter2", "hunter2"),
        # Every host of a multi-host transport URL carries the password, not only the first.
        (f"cannot dial {URL}", "Pa55w0rd"),
    ],
)
def test_redact_removes(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_leaves_plain_evidence_alone() -> None:
    line = "queue compute.mc-compute1: 0 consumers; nova-compute on mc-compute1 is up"
    assert redact(line) == line


def test_a_broker_url_ends_where_the_prose_goes_on() -> None:
    text = "tried rabbit://u:p@h1, then gave up"
    assert redact(text) == "tried rabbit://<redacted>, then gave up"


def test_known_secrets_are_masked_longest_first() -> None:
    text = f"cannot use {URL} (password Pa55w0rd)"
    assert redact(text, ["Pa55w0rd", URL]) == f"cannot use {MASK} (password {MASK})"


def test_url_credentials_are_masked_even_when_not_given() -> None:
    assert redact("dial amqp://guest:guest@h:5672// failed") == "dial amqp://<redacted> failed"
    assert redact("see https://user@example.org/x") == f"see https://{MASK}@example.org/x"


def test_redact_line_keeps_plain_text_on_one_line() -> None:
    assert redact_line("queue compute.h1 has\n 0 consumers", ["", "x-not-there"]) == (
        "queue compute.h1 has 0 consumers"
    )


def test_one_line_and_clip_mark_what_was_cut() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("abcdef", 4) == "abc…"
    assert clip("abcd", 4) == "abcd"
    assert clip("a  b  c", 5) == "a  b…"


def test_exceptions_become_one_redacted_line() -> None:
    assert describe(ValueError(f"bad {URL}"), [URL]) == f"ValueError: bad {MASK}"
    assert describe(TimeoutError()) == "TimeoutError"
    assert message(ValueError("bad\npassword=hunter2")) == f"bad password={MASK}"
    assert message(TimeoutError()) == "TimeoutError"

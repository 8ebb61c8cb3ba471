"""Secrets, URL credentials and tokens are masked in every line the harness prints or posts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import string
from collections.abc import Iterator

import pytest

from e2etests import redact as redact_module
from e2etests.redact import (
    MASK,
    add_secrets,
    clip,
    describe,
    message,
    one_line,
    redact,
    redact_line,
    redact_tree,
)

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


# Every shape a secret takes in the harness's output, with what must be left of it. Each row
# names the fragments that must not survive: a partial mask (the tail of a password after an
# "@", the second word of a quoted pass phrase) is a leak too.
SHAPES = [
    # URL userinfo runs to the last "@": a raw password may hold "/", "@" or ":"
    ("https://admin:pa/ss@keystone:5000/v3", "https://***@keystone:5000/v3", ["pa/ss", "ss@"]),
    ("https://admin:p@ss@keystone/v3 failed", "https://***@keystone/v3 failed", ["p@", "ss@"]),
    ("https://admin:p:w@k/v3", "https://***@k/v3", ["p:w"]),
    ("http://u:p%40ss@k/", "http://***@k/", ["p%40ss"]),
    # every host of a multi-host transport URL, whatever its password holds
    ("rabbit://u:p1@h1,u:p2@h2/vh", "rabbit://<redacted>", ["p1", "p2"]),
    ("rabbit://u:pa;ss@h1,u:pa;ss@h2/", "rabbit://<redacted>", ["pa;", ";ss"]),
    ("kombu+memory://u:p1@h1", "kombu+memory://<redacted>", ["p1"]),
    # a multi-host URL written with spaces: every host's userinfo, not just the first
    ("rabbit://u:p1@h1, u:p2@h2/ failed", f"rabbit://<redacted>, {MASK}@h2/ failed", ["p1", "p2"]),
    ("amqp://u:p1@h1; u2:p@ss2@h2:5672", f"amqp://<redacted>; {MASK}@h2:5672", ["p1", "ss2"]),
    ("nova:hunter2@10.0.0.5 refused", f"{MASK}@10.0.0.5 refused", ["hunter2"]),
    # quoted values of secret-named keys: JSON, Python repr, escaped inside a string
    (
        '{"password": "correct horse battery", "user": "admin"}',
        '{"password": "***", "user": "admin"}',
        ["correct", "horse", "battery"],
    ),
    ("{'admin_password': 'a, b; c}'}", "{'admin_password': '***'}", ["a,", "b;", "c}"]),
    ('{"password": "say \\"hi\\" now"}', '{"password": "***"}', ["hi", "now"]),
    ('"{\\"password\\": \\"a b c\\"}"', '"{\\"password\\": \\"***\\"}"', ["a b", "b c"]),
    (
        "<TransportHost hostname='h1', port=5672, username='nova', password='p@ss w/d'>",
        "<TransportHost hostname='h1', port=5672, username='nova', password='***'>",
        ["p@ss", "w/d"],
    ),
    ("auth={'secret_key': 'k k'}", "auth={'secret_key': '***'}", ["k k"]),
    ("X-Subject-Token: abc123", "X-Subject-Token: ***", ["abc123"]),
    # unquoted values and command lines
    ("password=hunter2 and more", "password=*** and more", ["hunter2"]),
    ("OS_PASSWORD: hunter2", "OS_PASSWORD: ***", ["hunter2"]),
    (
        "--os-password hunter2 --os-username admin",
        "--os-password *** --os-username admin",
        ["hunter2"],
    ),
    # tokens and webhooks
    (
        "post to https://hooks.slack.com/services/T0/B0/XyZ123 failed",
        "post to https://hooks.slack.com/*** failed",
        ["T0/B0", "XyZ123"],
    ),
    ("bot xoxb-123-456-abcdef", f"bot xox?-{MASK}", ["xoxb-123", "abcdef"]),
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***", ["abc.def"]),
]


@pytest.mark.parametrize(("text", "expected", "leaks"), SHAPES, ids=[row[0] for row in SHAPES])
def test_every_shape_of_secret_is_masked_whole(text: str, expected: str, leaks: list[str]) -> None:
    got = redact(text)
    assert got == expected
    for fragment in leaks:
        assert fragment not in got


@pytest.mark.parametrize("text", [row[0] for row in SHAPES])
def test_redacting_twice_changes_nothing(text: str) -> None:
    # the pytest plugin redacts a report where it is made and again where it is logged
    once = redact(text)
    assert redact(once) == once


def test_redact_tree_reaches_every_string_and_keeps_the_rest() -> None:
    @dataclasses.dataclass(frozen=True)
    class Inner:
        lines: tuple[str, ...]
        seconds: float

    @dataclasses.dataclass(frozen=True)
    class Outer:
        name: str
        inner: Inner
        extra: dict[str, list[str]]
        at: dt.datetime

    at = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    value = Outer("password=a", Inner(("token: b", "plain"), 1.5), {"k": ["secret=c"]}, at)
    assert redact_tree(value) == Outer(
        f"password={MASK}", Inner((f"token: {MASK}", "plain"), 1.5), {"k": [f"secret={MASK}"]}, at
    )


@pytest.fixture
def registry() -> Iterator[None]:
    """The process-wide registry, emptied again afterwards so tests do not leak into each other."""
    saved = redact_module.known_secrets()
    yield
    redact_module.restore_secrets(saved)


@pytest.mark.usefixtures("registry")
def test_a_registered_secret_is_masked_in_every_spelling() -> None:
    # a Keystone password no pattern can recognise, registered by the config loader
    secret = 'p@ss w/rd!"x'  # noqa: S105 (planted)
    add_secrets([secret])
    spellings = [
        secret,
        "p%40ss%20w%2Frd%21%22x",  # in a URL
        "p%40ss%20w/rd%21%22x",
        "p%40ss+w%2Frd%21%22x",  # in a form body
        json.dumps(secret)[1:-1],  # inside JSON
        repr(secret)[1:-1],  # inside a repr
    ]
    for spelling in spellings:
        assert redact(f"login failed for {spelling} today") == f"login failed for {MASK} today"


def test_redact_leaves_plain_evidence_alone() -> None:
    line = "queue compute.mc-compute1: 0 consumers; nova-compute on mc-compute1 is up"
    assert redact(line) == line
    mail = "ask ops@example.org, at 12:30 UTC: e2e-monitor@mq1 is not a password"
    assert redact(mail) == mail


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


def _every_form(secrets: list[str]) -> list[str]:
    """What the index stands in for: every spelling of every secret, searched one by one."""
    return sorted(
        {form for s in secrets for form in redact_module._spellings(s)}, key=len, reverse=True
    )


@pytest.mark.parametrize("padding", [0, 1, 3, 200, 5000], ids=lambda n: f"pad{n}")
def test_the_form_index_finds_what_a_search_for_every_form_finds(padding: int) -> None:
    rng = random.Random(padding)
    alphabet = string.ascii_letters + string.digits + " /@:%+'\"\\!"
    # Many secrets, some sharing their first characters, a few shorter than the index's grams.
    secrets = ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 24))) for _ in range(300)]
    secrets += [f"Pa55{i}word" for i in range(20)] + ["ab", "x!"]
    forms = redact_module._Forms(secrets)
    for _ in range(200):
        planted = rng.sample(_every_form(secrets), rng.randint(0, 3))
        filler = "".join(rng.choice(alphabet) for _ in range(padding))
        # A form may open or close the text: no prose around it.
        text = filler.join(rng.choice([[], ["start"]]) + planted + rng.choice([[], ["end"]]))
        expected = {f for f in _every_form(secrets) if f in text}
        assert set(forms.found_in(text)) == expected, text


@pytest.mark.usefixtures("registry")
def test_a_secret_registered_after_a_redact_is_masked_from_then_on() -> None:
    assert redact("token-free text: Zq9-late-secret") == "token-free text: Zq9-late-secret"
    add_secrets(["Zq9-late-secret"])
    assert redact("token-free text: Zq9-late-secret") == f"token-free text: {MASK}"
    redact_module.restore_secrets(frozenset())
    assert redact("token-free text: Zq9-late-secret") == "token-free text: Zq9-late-secret"

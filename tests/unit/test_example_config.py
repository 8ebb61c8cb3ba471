"""clouds.yaml.example stays a valid configuration, MQ block included."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import yaml

from e2etests import config
from e2etests.errors import ConfigError

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "clouds.yaml.example"


def test_the_example_parses_with_every_check_configured() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())["clouds"]["cluster42"]["e2etests"]
    settings = config.parse_settings(raw, source=str(EXAMPLE), cloud="cluster42")
    assert (settings.flavor, settings.image, settings.network) == ("m1.tiny", "cirros", "e2e-net")
    mq = settings.mq
    assert mq is not None
    assert mq.where == f"{EXAMPLE}: clouds.cluster42.e2etests.mq"
    assert mq.rabbitmq is not None
    assert mq.rabbitmq.username == "e2e-monitor"
    assert mq.transport_url is not None


def test_the_ranges_the_example_documents_are_the_ones_enforced() -> None:
    ranges = re.findall(r"# (\w+): [\d.]+ +#[^(\n]*\(([\d.]+) to ([\d.]+)", EXAMPLE.read_text())
    documented = {key for key, _, _ in ranges}
    assert documented == {"boot_timeout", "delete_timeout", "poll_interval", "grace"} | {
        "canary_deadline"
    }
    for key, low, high in ranges:
        for value, accepted in [
            (float(low), True),
            (float(high), True),
            (float(low) * 0.99, False),
            (float(high) * 1.01, False),
        ]:
            block: dict[str, Any] = {"flavor": "f", "image": "i", "boot_timeout": 3600}
            if key == "boot_timeout":
                block["poll_interval"] = 0.1  # stays shorter than the smallest boot_timeout
            (block.setdefault("mq", {}) if key in {"grace", "canary_deadline"} else block)[key] = (
                value
            )
            if accepted:
                config.parse_settings(block, source="f", cloud="c")
            else:
                with pytest.raises(ConfigError, match=rf"\.{key}: expected a number of seconds"):
                    config.parse_settings(block, source="f", cloud="c")

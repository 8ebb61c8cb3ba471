"""clouds.yaml.example stays a valid configuration, MQ block included."""

from __future__ import annotations

import pathlib

import yaml

from e2etests import config
from e2etests.mq.settings import parse_mq_settings

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "clouds.yaml.example"


def test_the_example_parses_with_every_check_configured() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())["clouds"]["cluster42"]["e2etests"]
    settings = config.parse_settings(raw, source=str(EXAMPLE), cloud="cluster42")
    assert (settings.flavor, settings.image, settings.network) == ("m1.tiny", "cirros", "e2e-net")
    mq = parse_mq_settings(settings.mq, f"{EXAMPLE}: clouds.cluster42.e2etests.mq")
    assert mq is not None
    assert mq.rabbitmq is not None
    assert mq.rabbitmq.username == "e2e-monitor"
    assert mq.transport_url is not None

"""The example events: Stripe's own objects, for every type in the catalog."""

from __future__ import annotations

import pytest

import stripe_events._catalog as catalog
from stripe_events._envelope import parse_event
from stripe_events_testing import samples
from tests.helpers import ROOT

SHARED = ROOT.parent / "shared" / "data" / "stripe-fixtures3.json"


@pytest.mark.skipif(not SHARED.exists(), reason="no shared/ beside this clone")
def test_the_fixtures_are_the_shared_copy() -> None:
    assert samples.FIXTURES.read_bytes() == SHARED.read_bytes()


def test_every_catalog_type_gets_a_valid_event_around_a_real_object() -> None:
    published = 0
    for event_type in catalog.event_types():
        event = samples.sample_event(event_type, created=1_767_225_600)
        header = parse_event(samples.encode(event).decode(), livemode=False)
        assert (header.type, header.created) == (event_type, 1_767_225_600)
        name = samples.object_name(event_type)
        if name is not None:
            assert event["data"]["object"]["object"] == samples.example_objects()[name]["object"]
            published += 1
    # Stripe publishes an example for all but a handful of resources.
    assert published >= len(catalog.event_types()) - 10

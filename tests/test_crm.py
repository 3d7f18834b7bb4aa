"""The demo CRM's own rules, apart from its database."""

from __future__ import annotations

import pytest

from nlu.crm.demo import in_area


@pytest.mark.parametrize(("address", "area", "inside"), [
    ("12 Harbour Road, Brightwater", "Brightwater", True),
    ("brightwater", "Brightwater", True),
    ("42 Oxford Road, Brightwater", "Oxford", False),  # the street is named after the town
    ("42 Oxford Road, Brightwater", "Brightwater", True),
    ("7 High St, Oxford", "Oxford", True),
    ("3 Mill Lane, St Ives", "St Ives", True),
    ("Flat 2, 9 Northgate, Kingsbridge", "North", False),  # not a word of the address
    ("9 Station Approach, Lower Kingsbridge", "Kingsbridge", True),
    ("", "Oxford", False),
])
def test_an_address_is_in_an_area_by_its_town_not_its_street(address: str, area: str,
                                                              inside: bool) -> None:
    assert in_area(address, area) is inside

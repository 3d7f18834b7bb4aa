"""What the dialogue needs from an operator's CRM, and nothing more.

An operator's real CRM plugs in by implementing ``CRM``; the built-in demo CRM
(``nlu.crm.demo``) keeps the same records in the project's database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Customer:
    account_number: str
    pin: str
    name: str
    date_of_birth: dt.date
    phone_number: str
    address: str
    plan: str
    balance_due: float
    due_date: dt.date
    data_used_gb: float
    data_allowance_gb: float | None  # None: unlimited
    roaming_enabled: bool
    area: str


@dataclass(frozen=True)
class Outage:
    area: str
    service: str
    status: str
    eta: str


@dataclass(frozen=True)
class Ticket:
    id: str
    type: str
    priority: str
    status: str
    account_number: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime | None = None


class CRM(Protocol):
    def customer(self, account_number: str) -> Customer | None: ...

    def customer_by_phone(self, phone_number: str) -> Customer | None: ...

    def outages_for(self, area_or_address: str) -> list[Outage]: ...

    def service_areas(self) -> list[str]:
        """The towns and areas the operator serves, as it writes them: speech recognition
        is told their names while an address is asked for."""
        ...

    def create_ticket(self, type: str, priority: str, account_number: str | None,
                      fields: dict[str, Any]) -> Ticket: ...

    def update_ticket(self, ticket_id: str, **changes: Any) -> Ticket: ...

    def ticket(self, ticket_id: str) -> Ticket | None: ...

    def tickets_for(self, account_number: str) -> list[Ticket]: ...

    def update_customer(self, account_number: str, **changes: Any) -> Customer: ...

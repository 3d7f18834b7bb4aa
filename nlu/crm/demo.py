"""The built-in demo CRM: realistic fake customers in the project's own database.

Its tables (``crm_*``) live beside the call store's but are the CRM's own:
an operator who plugs in a real CRM never creates them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from nlu.crm.base import Customer, Outage, Ticket
from voicedesk.errors import ConfigError, VoicedeskError

# Words that make the name before them a street's, not a town's: "Oxford Road".
_STREET_WORDS = frozenset((
    "road", "rd", "street", "st", "avenue", "ave", "lane", "ln", "drive", "dr", "way", "close",
    "crescent", "place", "court", "terrace", "gardens", "grove", "square", "row", "hill",
    "walk", "mews", "parade", "boulevard", "approach", "rise", "view"))
_WORDS = re.compile(r"[a-z0-9']+")


def in_area(address: str, area: str) -> bool:
    """Whether an address (or an area's name as the caller said it) lies in ``area``: the
    area's name as whole words, and not as the start of a street's name. "42 Oxford Road,
    Brightwater" is in Brightwater, not in Oxford; "north" is not in "Northgate"."""
    words, name = _WORDS.findall(address.lower()), _WORDS.findall(area.lower())
    if not name:
        return False
    for i in range(len(words) - len(name) + 1):
        if words[i:i + len(name)] == name:
            after = words[i + len(name)] if i + len(name) < len(words) else ""
            if after not in _STREET_WORDS:
                return True
    return False


class _Base(DeclarativeBase):
    pass


class CustomerRow(_Base):
    __tablename__ = "crm_customers"
    account_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    pin: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    phone_number: Mapped[str] = mapped_column(String(32), index=True)
    address: Mapped[str] = mapped_column(Text)
    plan: Mapped[str] = mapped_column(String(64))
    balance_due: Mapped[float] = mapped_column(Float)
    due_date: Mapped[dt.date] = mapped_column(Date)
    data_used_gb: Mapped[float] = mapped_column(Float)
    data_allowance_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    roaming_enabled: Mapped[bool] = mapped_column(Boolean)
    area: Mapped[str] = mapped_column(String(64))


class OutageRow(_Base):
    __tablename__ = "crm_outages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    area: Mapped[str] = mapped_column(String(64), index=True)
    service: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    eta: Mapped[str] = mapped_column(String(32))


class TicketRow(_Base):
    __tablename__ = "crm_tickets"
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    account_number: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


CUSTOMER_KEYS = {f.name for f in dataclasses.fields(Customer)}
OUTAGE_KEYS = {f.name for f in dataclasses.fields(Outage)}
SEED = Path(__file__).parent.parent / "domain" / "telecom" / "demo_customers.yaml"


def ticket_id(number: int) -> str:
    return f"TKT-{number:06d}"


class DemoCRM:
    def __init__(self, url: str = "sqlite://") -> None:
        kwargs: dict[str, Any] = {}
        if url in {"sqlite://", "sqlite:///:memory:"}:  # one shared in-memory database
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        self.engine: Engine = create_engine(url, **kwargs)
        _Base.metadata.create_all(self.engine)

    # ---- seeding -----------------------------------------------------------------
    def load(self, customers: list[dict[str, Any]], outages: list[dict[str, Any]] = ()) -> None:
        """Add customers and outages in the scenario format; unknown keys are an error."""
        rows: list[Any] = []
        for i, raw in enumerate(customers, 1):
            unknown = set(raw) - CUSTOMER_KEYS
            if unknown:
                raise ConfigError(f"customer {i}: unknown keys {sorted(unknown)}; "
                                  f"known: {sorted(CUSTOMER_KEYS)}")
            missing = {"account_number", "pin", "name"} - set(raw)
            if missing:
                raise ConfigError(f"customer {i}: missing {sorted(missing)}")
            rows.append(CustomerRow(**_customer_defaults(raw)))
        for i, raw in enumerate(outages, 1):
            unknown = set(raw) - OUTAGE_KEYS
            if unknown:
                raise ConfigError(f"outage {i}: unknown keys {sorted(unknown)}")
            rows.append(OutageRow(area=str(raw["area"]), service=str(raw.get("service", "")),
                                  status=str(raw.get("status", "investigating")),
                                  eta=str(raw.get("eta", "unknown"))))
        with Session(self.engine) as session, session.begin():
            session.add_all(rows)

    def seed_if_empty(self, path: Path = SEED) -> None:
        with Session(self.engine) as session:
            if session.scalar(select(func.count()).select_from(CustomerRow)):
                return
        data = yaml.safe_load(path.read_text())
        self.load(data.get("customers", []), data.get("outages", []))

    # ---- CRM interface -------------------------------------------------------------
    def customer(self, account_number: str) -> Customer | None:
        with Session(self.engine) as session:
            row = session.get(CustomerRow, account_number)
            return _customer(row) if row else None

    def customer_by_phone(self, phone_number: str) -> Customer | None:
        digits = "".join(c for c in phone_number if c.isdigit())
        if not digits:
            return None
        with Session(self.engine) as session:
            for row in session.scalars(select(CustomerRow)):
                own = "".join(c for c in row.phone_number if c.isdigit())
                if own and (own.endswith(digits[-10:]) or digits.endswith(own[-10:])):
                    return _customer(row)
        return None

    def service_areas(self) -> list[str]:
        with Session(self.engine) as session:
            areas = {*session.scalars(select(CustomerRow.area)),
                     *session.scalars(select(OutageRow.area))}
        return sorted(a for a in areas if a)

    def outages_for(self, area_or_address: str) -> list[Outage]:
        text = area_or_address.strip().lower()
        if not text:
            return []
        with Session(self.engine) as session:
            rows = session.scalars(select(OutageRow)).all()
            return [Outage(r.area, r.service, r.status, r.eta) for r in rows
                    if in_area(text, r.area)]

    def create_ticket(self, type: str, priority: str, account_number: str | None,
                      fields: dict[str, Any]) -> Ticket:
        with Session(self.engine) as session, session.begin():
            row = TicketRow(type=type, priority=priority, status="open",
                            account_number=account_number, fields=dict(fields),
                            created_at=dt.datetime.now(dt.UTC))
            session.add(row)
            session.flush()
            return _ticket(row)

    def update_ticket(self, ticket_id_: str, **changes: Any) -> Ticket:
        with Session(self.engine) as session, session.begin():
            row = session.get(TicketRow, _ticket_number(ticket_id_))
            if row is None:
                raise VoicedeskError(f"ticket {ticket_id_} does not exist")
            for key, value in changes.items():
                if key == "fields":
                    row.fields = {**row.fields, **value}
                elif key in {"status", "priority"}:
                    setattr(row, key, value)
                else:
                    raise VoicedeskError(f"ticket field {key!r} cannot be changed")
            session.flush()
            return _ticket(row)

    def ticket(self, ticket_id_: str) -> Ticket | None:
        number = _ticket_number(ticket_id_)
        if number is None:
            return None
        with Session(self.engine) as session:
            row = session.get(TicketRow, number)
            return _ticket(row) if row else None

    def tickets_for(self, account_number: str) -> list[Ticket]:
        with Session(self.engine) as session:
            stmt = select(TicketRow).where(TicketRow.account_number == account_number)
            return [_ticket(r) for r in session.scalars(stmt.order_by(TicketRow.number))]

    def all_tickets(self) -> list[Ticket]:
        with Session(self.engine) as session:
            return [_ticket(r) for r in session.scalars(select(TicketRow).order_by(
                TicketRow.number))]

    def update_customer(self, account_number: str, **changes: Any) -> Customer:
        allowed = {"address", "phone_number", "plan", "roaming_enabled", "area"}
        with Session(self.engine) as session, session.begin():
            row = session.get(CustomerRow, account_number)
            if row is None:
                raise VoicedeskError(f"customer {account_number} does not exist")
            for key, value in changes.items():
                if key not in allowed:
                    raise VoicedeskError(f"customer field {key!r} cannot be changed by a call")
                setattr(row, key, value)
            session.flush()
            return _customer(row)


def _as_date(value: Any, default: dt.date) -> dt.date:
    if value is None:
        return default
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _customer_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    allowance = raw.get("data_allowance_gb")
    return {
        "account_number": str(raw["account_number"]),
        "pin": str(raw["pin"]),
        "name": str(raw["name"]),
        "date_of_birth": _as_date(raw.get("date_of_birth"), dt.date(1970, 1, 1)),
        "phone_number": str(raw.get("phone_number", "")),
        "address": str(raw.get("address", "")),
        "plan": str(raw.get("plan", "")),
        "balance_due": float(raw.get("balance_due", 0.0)),
        "due_date": _as_date(raw.get("due_date"), dt.date.today()),
        "data_used_gb": float(raw.get("data_used_gb", 0.0)),
        "data_allowance_gb": None if allowance in (None, "unlimited") else float(allowance),
        "roaming_enabled": bool(raw.get("roaming_enabled", False)),
        "area": str(raw.get("area", "")),
    }


def _customer(row: CustomerRow) -> Customer:
    return Customer(**{f: getattr(row, f) for f in CUSTOMER_KEYS})


def _ticket(row: TicketRow) -> Ticket:
    created = row.created_at
    if created is not None and created.tzinfo is None:  # SQLite keeps no zone; we wrote UTC
        created = created.replace(tzinfo=dt.UTC)
    return Ticket(ticket_id(row.number), row.type, row.priority, row.status, row.account_number,
                  dict(row.fields or {}), created)


def _ticket_number(ticket_id_: str) -> int | None:
    digits = "".join(c for c in ticket_id_ if c.isdigit())
    return int(digits) if digits else None

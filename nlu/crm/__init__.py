"""The CRM adapter: customers, plans, bills, usage, outages and tickets behind one interface."""

from nlu.crm.base import CRM, Customer, Outage, Ticket

__all__ = ["CRM", "Customer", "Outage", "Ticket"]

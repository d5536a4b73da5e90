"""wafleet: a fleet of WhatsApp linked-device sessions, one isolated worker per number."""

__version__ = "0.1.0"

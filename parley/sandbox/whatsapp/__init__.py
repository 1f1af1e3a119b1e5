"""A faithful in-memory simulator of the WhatsApp Business Cloud API (PROTOCOLS.md Part 2)."""

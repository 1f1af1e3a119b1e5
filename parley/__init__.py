"""Parley: an open-source social CRM."""

__version__ = "0.1.0"

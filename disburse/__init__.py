"""disburse: pay subsidies to everyone entitled, with no application."""

__version__ = "0.1.0"

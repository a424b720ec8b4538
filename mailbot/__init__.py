"""mailbot: an e-mail intake bot for SI-Samu IT incident support."""

__version__ = "0.1.0"

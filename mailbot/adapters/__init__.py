"""Adapters: the concrete edges of mailbot (IMAP, Maildir, SMTP, store, scheduler).

Import rule: an adapter may import ``mailbot.ports``, ``mailbot.model``,
``mailbot.errors`` and its own I/O library; adapters never import each other,
and nothing in the core imports an adapter. Only the composition root
(``mailbot.app``) picks and builds them. This package file imports nothing on
purpose, so using one adapter does not pull in every I/O library.
"""

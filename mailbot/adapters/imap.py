"""IMAP mail source over IMAPClient: the production ``MailSource``.

Import rule: ``mailbot.ports``, ``mailbot.errors``, ``imapclient`` and the
standard library (``ssl``, ``socket``-level exceptions, ``logging``). No other
adapter, no core module.

What it guarantees (see the reliability notes, G1/G2/G9):

* Reading never changes server state: messages are fetched by UID with
  ``BODY.PEEK[]`` (RFC 3501 §6.4.5), so ``\\Seen`` is not set and nothing is
  removed. A message leaves the inbox only through ``move()``, which the
  service calls after the outcome is committed.
* ``move()`` uses ``UID MOVE`` (RFC 6851, atomic) when offered, else
  ``UID COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` (RFC 4315 UIDPLUS), and only as a
  last resort a plain ``EXPUNGE``, which also removes any other message a human
  flagged ``\\Deleted`` in the inbox (logged as a warning). ``move_many()``
  does the same for a whole batch with one UID set per command (``1:40,42``),
  one round trip instead of one per mail.
* ``uidvalidity`` is read at every SELECT and exposed, so the store can notice
  that the stored UIDs have become meaningless (RFC 3501 §2.3.1.1).
* TLS is verified (``ssl.create_default_context``); a failed STARTTLS never
  falls back to clear text. ``security="none"`` is refused unless the host is
  a loopback address (it exists for tests against a local Dovecot).
* A dropped connection (socket error, ``IMAPClient.AbortError``) is re-opened
  with bounded exponential back-off, and the interrupted operation is retried
  once.
* Passwords and OAuth2 tokens are never logged and never appear in ``repr``.

Folder names in the settings use ``/`` for hierarchy ("Support/Traité"); the
adapter rewrites it with the server's delimiter and personal namespace prefix
(RFC 2342: Courier and old Cyrus put every folder under "INBOX."), and
IMAPClient encodes non-ASCII names in modified UTF-7 (RFC 3501 §5.1.3), so
"Traité" goes on the wire as "Trait&AOk-".
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from imapclient import DELETED, IMAPClient, SocketTimeout
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

from mailbot.errors import MailboxError
from mailbot.ports import DEFAULT_FOLDERS, RawMail, is_loopback

log = logging.getLogger(__name__)

T = TypeVar("T")

Security = Literal["tls", "starttls", "none"]

# What a broken connection looks like through IMAPClient: imaplib raises
# IMAP4.abort (IMAPClient.AbortError) on EOF or a garbled reply, and the socket
# layer raises OSError (BrokenPipeError, ConnectionResetError, TimeoutError,
# ssl.SSLError).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (IMAPClient.AbortError, OSError, EOFError)

# RFC 2177 §3: clients should re-issue IDLE at least every 29 minutes, because
# servers may log out an idle client after 30 minutes of inactivity.
_IDLE_RENEW_SECONDS = 25 * 60


# UIDs per MOVE/COPY command of move_many: keeps the command line far below
# the limits servers put on it (Dovecot: imap_max_line_length, 64 KB; RFC
# 7162 §4 asks clients to stay under 8 KB) even when no two UIDs are
# consecutive.
_MAX_UIDS_PER_COMMAND = 500




@dataclass(frozen=True, kw_only=True)
class ImapSettings:
    """Connection and behaviour settings for :class:`ImapSource`.

    ``password`` (or ``oauth2_token``, a callable returning a fresh access
    token, e.g. read from a file or a command by the caller) is never shown in
    ``repr``. ``folders`` maps outcome keys (``mailbot.ports.PROCESSED`` ...)
    to folder names. ``ignore_capabilities`` makes the adapter behave as if the
    server did not advertise them (a server that advertises MOVE but breaks it;
    also how the tests exercise the COPY fallback).
    """

    host: str
    username: str
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    security: Security = "tls"
    ca_file: str | None = None
    oauth2_token: Callable[[], str] | None = field(default=None, repr=False)
    inbox: str = "INBOX"
    folders: Mapping[str, str] = field(default_factory=lambda: MappingProxyType(dict(DEFAULT_FOLDERS)))
    batch_size: int = 50
    timeout: float = 60.0
    connect_timeout: float = 15.0
    connect_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    poll_interval: float = 30.0
    ignore_capabilities: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.security not in ("tls", "starttls", "none"):
            raise ValueError(f"imap security must be 'tls', 'starttls' or 'none', not {self.security!r}")
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                f"imap security 'none' sends the password in clear text; it is only accepted "
                f"for a loopback host, not {self.host!r}"
            )
        if self.password is None and self.oauth2_token is None:
            raise ValueError("imap needs a password or an oauth2_token")
        if self.batch_size < 1 or self.connect_attempts < 1:
            raise ValueError("imap batch_size and connect_attempts must be at least 1")

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.security == "tls" else 143


class ImapSource:
    """``MailSource`` over one IMAP inbox. Not thread-safe: one per worker.

    Example::

        source = ImapSource(ImapSettings(host="imap.example.org", username="bot",
                                         password=os.environ["MAILBOT_IMAP_PASSWORD"]))
        for mail in source.fetch_new(limit=100):
            ...                      # parse, decide, commit
            source.move(mail, PROCESSED)
        source.wait_for_new(timeout=300)
        source.close()
    """

    def __init__(self, settings: ImapSettings) -> None:
        self._settings = settings
        self._client: IMAPClient | None = None
        self._uidvalidity: int | None = None
        self._delimiter = "/"
        self._prefix = ""
        self._known_folders: set[str] = set()
        # Highest UID handed out by fetch_new under the current UIDVALIDITY;
        # wait_for_new reports only messages above it.
        self._last_seen_uid = 0
        self._warned_plain_expunge = False

    # ------------------------------------------------------------------ state

    @property
    def uidvalidity(self) -> int | None:
        """UIDVALIDITY of the inbox at the last SELECT (None before connecting)."""
        return self._uidvalidity

    def __enter__(self) -> ImapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self._settings
        return f"ImapSource({s.username}@{s.host}:{s.effective_port}/{s.inbox})"

    # ------------------------------------------------------------ connection

    def connect(self) -> None:
        """(Re)open the connection, log in and select the inbox.

        Network failures are retried with exponential back-off
        (``backoff_initial`` doubling up to ``backoff_max``, at most
        ``connect_attempts`` tries). A refused login, a certificate that does
        not verify or a server without STARTTLS fails at once: retrying would
        not help and could lock the account.
        """
        self._drop()
        s = self._settings
        delay = s.backoff_initial
        for attempt in range(1, s.connect_attempts + 1):
            try:
                self._client = self._open()
                return
            except ssl.SSLCertVerificationError as exc:
                raise MailboxError(f"TLS certificate of IMAP server {s.host} does not verify: {exc}") from exc
            except _CONNECTION_ERRORS as exc:
                if attempt == s.connect_attempts:
                    raise MailboxError(
                        f"cannot reach IMAP server {s.host}:{s.effective_port} after "
                        f"{attempt} attempts: {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning(
                    "IMAP connect to %s:%s failed (%s), attempt %d/%d, retrying in %.1f s",
                    s.host, s.effective_port, type(exc).__name__, attempt, s.connect_attempts, delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, s.backoff_max)
            except IMAPClientError as exc:
                raise MailboxError(
                    f"IMAP server {s.host}:{s.effective_port} refused the session: {_text(exc)}"
                ) from exc

    def _open(self) -> IMAPClient:
        s = self._settings
        context = self._ssl_context()
        client = IMAPClient(
            s.host,
            port=s.effective_port,
            ssl=s.security == "tls",
            ssl_context=context if s.security == "tls" else None,
            timeout=SocketTimeout(connect=s.connect_timeout, read=s.timeout),
        )
        try:
            if s.security == "starttls":
                try:
                    client.starttls(context)
                except CapabilityError as exc:
                    raise MailboxError(
                        f"IMAP server {s.host} does not offer STARTTLS; refusing to log in in clear text"
                    ) from exc
            self._login(client)
            self._read_namespace(client)
            self._select_inbox(client)
        except BaseException:
            _shutdown(client)
            raise
        return client

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self._settings.security == "none":
            return None
        # Verification and hostname checks on. A configured CA file (private
        # PKI) replaces the system store, as ssl.create_default_context does.
        return ssl.create_default_context(cafile=self._settings.ca_file)

    def _login(self, client: IMAPClient) -> None:
        s = self._settings
        try:
            if s.oauth2_token is not None:
                # SASL XOAUTH2 (Google, Microsoft 365). The token is fetched at
                # every connect because access tokens expire after about an hour.
                try:
                    token = s.oauth2_token()
                except Exception as exc:  # whatever the caller's token source raises
                    raise MailboxError(f"could not obtain the OAuth2 token for {s.username!r}: {exc}") from exc
                client.oauth2_login(s.username, token)
            else:
                assert s.password is not None
                client.login(s.username, s.password)
        except LoginError as exc:
            # The server text ("[AUTHENTICATIONFAILED] ...", RFC 5530) carries
            # no secret; the password itself is never formatted anywhere.
            raise MailboxError(
                f"IMAP login refused for user {s.username!r} on {s.host}:{s.effective_port}: "
                f"{_text(exc)} (check the password or token)"
            ) from exc

    def _read_namespace(self, client: IMAPClient) -> None:
        prefix, delimiter = "", None
        if client.has_capability("NAMESPACE"):
            personal = client.namespace().personal
            if personal:
                prefix, delimiter = personal[0][0] or "", personal[0][1]
        if delimiter is None:
            # LIST "" "" returns the hierarchy delimiter (RFC 3501 §6.3.8).
            listing = client.list_folders("", "")
            if listing and listing[0][1]:
                delimiter = _text(listing[0][1])
        self._prefix = prefix
        self._delimiter = delimiter or "/"

    def _select_inbox(self, client: IMAPClient) -> None:
        info = client.select_folder(self._server_name(self._settings.inbox))
        validity = int(info[b"UIDVALIDITY"])
        if self._uidvalidity is not None and validity != self._uidvalidity:
            log.warning(
                "UIDVALIDITY of %s changed from %s to %s: stored UIDs no longer name the same messages",
                self._settings.inbox, self._uidvalidity, validity,
            )
            self._last_seen_uid = 0
        self._uidvalidity = validity

    def _drop(self) -> None:
        if self._client is not None:
            _shutdown(self._client)
            self._client = None

    def _run(self, what: str, operation: Callable[[IMAPClient], T]) -> T:
        """Run ``operation`` on a live connection; after a drop, reconnect and retry once."""
        if self._client is None:
            self.connect()
        assert self._client is not None
        try:
            return operation(self._client)
        except _CONNECTION_ERRORS as exc:
            log.warning("IMAP connection lost during %s (%s); reconnecting", what, type(exc).__name__)
        except IMAPClientError as exc:
            raise MailboxError(f"IMAP {what} failed: {_text(exc)}") from exc
        self.connect()
        assert self._client is not None
        try:
            return operation(self._client)
        except _CONNECTION_ERRORS as exc:
            self._drop()
            raise MailboxError(f"IMAP connection lost again during {what}: {type(exc).__name__}: {exc}") from exc
        except IMAPClientError as exc:
            raise MailboxError(f"IMAP {what} failed: {_text(exc)}") from exc

    def _has(self, client: IMAPClient, capability: str) -> bool:
        if capability.upper() in {c.upper() for c in self._settings.ignore_capabilities}:
            return False
        return bool(client.has_capability(capability))

    # ------------------------------------------------------------------ read

    def fetch_new(self, limit: int | None = None) -> Iterator[RawMail]:
        """Yield the inbox's messages oldest UID first, in ``batch_size`` fetches.

        Messages flagged ``\\Deleted`` (a COPY fallback interrupted before its
        EXPUNGE) are skipped. A message that disappears between SEARCH and
        FETCH (moved by a human) is skipped silently. Raises ``MailboxError``
        if UIDVALIDITY changes in the middle: the caller starts over.
        """
        uids = sorted(self._run("search", lambda c: c.search(["NOT", "DELETED"])))
        if limit is not None:
            uids = uids[: max(limit, 0)]
        if not uids:
            return
        validity = self._uidvalidity
        inbox = self._settings.inbox
        size = self._settings.batch_size
        for start in range(0, len(uids), size):
            batch = uids[start : start + size]

            def fetch(client: IMAPClient, batch: list[int] = batch) -> dict[int, Any]:
                if self._uidvalidity != validity:
                    raise MailboxError(f"UIDVALIDITY of {inbox} changed during fetch; fetch again")
                return client.fetch(batch, ["BODY.PEEK[]"])

            data = self._run("fetch", fetch)
            for uid in batch:
                item = data.get(uid)
                raw = item.get(b"BODY[]") if item else None
                if raw is None:
                    continue
                self._last_seen_uid = max(self._last_seen_uid, uid)
                yield RawMail(
                    key=f"imap:{inbox}:{validity}:{uid}",
                    mailbox=inbox,
                    uidvalidity=validity,
                    uid=uid,
                    raw=bytes(raw),
                )

    # ----------------------------------------------------------------- write

    def folder_name(self, folder: str) -> str:
        """The configured name for an outcome key, or ``folder`` itself."""
        return self._settings.folders.get(folder, folder)

    def _server_name(self, name: str) -> str:
        if name.upper() == "INBOX":
            return name
        server = self._delimiter.join(name.split("/"))
        if self._prefix and not server.startswith(self._prefix):
            server = self._prefix + server
        return server

    def _ensure_folder(self, client: IMAPClient, server_name: str) -> None:
        if server_name in self._known_folders:
            return
        if not client.folder_exists(server_name):
            try:
                client.create_folder(server_name)
                log.info("created IMAP folder %r", server_name)
            except IMAPClientError:
                # Another client may have created it in the meantime.
                if not client.folder_exists(server_name):
                    raise
            try:
                # So that staff see the folder in clients that show only
                # subscribed folders (Thunderbird, Outlook).
                client.subscribe_folder(server_name)
            except IMAPClientError:
                log.info("could not subscribe to IMAP folder %r", server_name)
        self._known_folders.add(server_name)

    def move(self, mail: RawMail, folder: str) -> None:
        """Move ``mail`` from the inbox to ``folder`` (outcome key or name).

        Idempotent: moving a message that is already gone is a no-op on the
        server (a UID command on absent UIDs succeeds, RFC 3501 §6.4.8).
        Raises ``MailboxError`` when UIDVALIDITY changed since the fetch, since
        the UID would then name another message.
        """
        self.move_many([mail], folder)

    def move_many(self, mails: Sequence[RawMail], folder: str) -> None:
        """Move all ``mails`` from the inbox to ``folder`` in one command
        per step (``UID MOVE <set>``, or ``UID COPY`` / ``UID STORE`` /
        ``UID EXPUNGE`` with the same set), the set written as ranges.

        Same guarantees as :meth:`move`: idempotent, refuses mails fetched
        under another UIDVALIDITY (nothing is moved then). ``UID MOVE`` is
        not atomic across the set (RFC 6851 §3.3 allows the server to move
        some and fail on others); the mails left behind are found again by
        the next fetch.
        """
        if not mails:
            return
        for mail in mails:
            if mail.uid is None or mail.mailbox != self._settings.inbox:
                raise MailboxError(f"{mail.key} does not come from IMAP inbox {self._settings.inbox!r}")
        target = self._server_name(self.folder_name(folder))
        uids = sorted({mail.uid for mail in mails if mail.uid is not None})
        validities = {mail.uidvalidity for mail in mails}

        def operation(client: IMAPClient) -> None:
            if validities != {self._uidvalidity}:
                raise MailboxError(
                    f"UIDVALIDITY of {self._settings.inbox} is now {self._uidvalidity}, not "
                    f"{', '.join(map(str, sorted(v for v in validities if v is not None)))}: "
                    f"refusing to move UIDs {_uid_set(uids)}; fetch again"
                )
            self._ensure_folder(client, target)
            for chunk in _chunks(uids, _MAX_UIDS_PER_COMMAND):
                uid_set = _uid_set(chunk)
                try:
                    self._move_set(client, uid_set, target)
                except IMAPClientError as exc:
                    if "TRYCREATE" not in _text(exc).upper() or isinstance(exc, IMAPClient.AbortError):
                        raise
                    # RFC 3501 §6.4.7: the folder vanished (deleted by a human)
                    # since we cached it; create it again and retry once.
                    self._known_folders.discard(target)
                    self._ensure_folder(client, target)
                    self._move_set(client, uid_set, target)

        self._run("move", operation)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("moved UIDs %s of %s to %r", _uid_set(uids), self._settings.inbox, target)

    def _move_set(self, client: IMAPClient, uid_set: str, target: str) -> None:
        # IMAPClient sends a str message set as is, so the compact ranges go
        # on the wire unchanged (a list would be written out UID by UID).
        if self._has(client, "MOVE"):
            client.move(uid_set, target)
            return
        client.copy(uid_set, target)
        client.add_flags(uid_set, [DELETED], silent=True)
        if self._has(client, "UIDPLUS"):
            client.uid_expunge(uid_set)
            return
        if not self._warned_plain_expunge:
            log.warning(
                "IMAP server has neither MOVE nor UIDPLUS: plain EXPUNGE also removes any other "
                "message flagged \\Deleted in %s",
                self._settings.inbox,
            )
            self._warned_plain_expunge = True
        client.expunge()

    # ------------------------------------------------------------------ wait

    def _has_unseen(self, client: IMAPClient) -> bool:
        last = self._last_seen_uid
        # "UID n:*" always matches the highest UID even when it is below n
        # (RFC 3501 §6.4.8), hence the filter.
        uids = client.search(["UID", f"{last + 1}:*", "NOT", "DELETED"])
        return any(uid > last for uid in uids)

    def wait_for_new(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for mail above the last fetched UID.

        Uses IDLE (RFC 2177) when the server offers it, else polls every
        ``poll_interval`` seconds. Returns True at once if such mail is already
        there, and True after a connection loss (the next fetch reconnects and
        finds out); False when the time ran out quietly.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        if self._run("check", self._has_unseen):
            return True
        assert self._client is not None
        if not self._has(self._client, "IDLE"):
            while (remaining := deadline - time.monotonic()) > 0:
                time.sleep(min(self._settings.poll_interval, remaining))
                if self._run("poll", self._has_unseen):
                    return True
            return False
        try:
            return self._idle(self._client, deadline)
        except _CONNECTION_ERRORS as exc:
            log.info("IMAP connection lost during IDLE (%s)", type(exc).__name__)
            self._drop()
            return True
        except IMAPClientError as exc:
            self._drop()
            raise MailboxError(f"IMAP IDLE failed: {_text(exc)}") from exc

    def _idle(self, client: IMAPClient, deadline: float) -> bool:
        while True:
            client.idle()
            closed = False
            try:
                renew_at = min(deadline, time.monotonic() + _IDLE_RENEW_SECONDS)
                while (remaining := renew_at - time.monotonic()) > 0:
                    started = time.monotonic()
                    responses = client.idle_check(timeout=remaining)
                    if any(_is_new_mail(r) for r in responses):
                        return True
                    if any(_is_bye(r) for r in responses) or (
                        not responses and time.monotonic() - started < remaining - 0.05
                    ):
                        # idle_check returns early with nothing when the server
                        # closed the socket (EOF), e.g. on shutdown or
                        # "doveadm kick".
                        closed = True
                        raise ConnectionAbortedError("IMAP server closed the connection during IDLE")
            finally:
                if not closed:
                    client.idle_done()
            if time.monotonic() >= deadline:
                return False

    # ----------------------------------------------------------------- close

    def close(self) -> None:
        """Log out (best effort) and forget the connection. Safe to call twice."""
        if self._client is None:
            return
        client, self._client = self._client, None
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may already be gone
            _shutdown(client)


def _uid_set(uids: Sequence[int]) -> str:
    """RFC 3501 §9 sequence-set of sorted UIDs, consecutive runs as ranges:
    [1, 2, 3, 7, 9, 10] -> "1:3,7,9:10"."""
    parts: list[str] = []
    start = prev = None
    for uid in uids:
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if prev != start else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_new_mail(response: object) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


def _is_bye(response: object) -> bool:
    return isinstance(response, tuple) and len(response) >= 1 and response[0] == b"BYE"


def _shutdown(client: IMAPClient) -> None:
    # Closing a dead socket may raise anything; there is nothing left to save.
    with contextlib.suppress(Exception):
        client.shutdown()


def _text(value: object) -> str:
    """Server texts reach us as bytes inside exception args; make them readable."""
    if isinstance(value, BaseException) and value.args:
        value = value.args[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)

"""Local Maildir mail source and sender: the embedded default (demo, no server).

Import rule: ``mailbot.ports``, ``mailbot.errors``, the standard library
(``mailbox``, ``os``) and IMAPClient's pure modified-UTF-7 codec. No network.

Layout: Maildir++ (the Courier/Dovecot convention). The inbox is the root
Maildir (``new/``, ``cur/``, ``tmp/``); each outcome folder is a sibling
Maildir named ``.<folder>`` inside it, created with a ``maildirfolder`` marker
by ``mailbox.Maildir.add_folder``. As Dovecot does on disk, folder names are
stored in IMAP modified UTF-7 (RFC 3501 §5.1.3) and hierarchy ``/`` becomes
``.``: "Traité" is the directory ``.Trait&AOk-``. So the very same tree can later
be served by Dovecot (``mail_location = maildir:<root>``) and the folders show
up with their real names in any mail client.

Guarantees, as for IMAP: ``fetch_new`` only reads (a message in ``new/`` stays
in ``new/``, which is what "unseen" means in Maildir); ``move`` is a single
``rename(2)`` inside one file system, so a message is either in the inbox or in
the folder, never in both or neither; the directories are fsynced afterwards.
"""

from __future__ import annotations

import email.policy
import logging
import mailbox
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path

from imapclient.imap_utf7 import encode as encode_mutf7

from mailbot.errors import MailboxError, TransientDeliveryError
from mailbot.ports import DEFAULT_FOLDERS, RawMail

log = logging.getLogger(__name__)

_SUBDIRS = ("new", "cur")


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory entry (POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _key_of(filename: str) -> str:
    # Maildir file names are "<unique>" in new/ and "<unique>:2,<flags>" in
    # cur/ (cr.yp.to/proto/maildir.html); the unique part is the stable key.
    return filename.split(":", 1)[0]


def _scan(root: Path) -> dict[str, tuple[Path, float]]:
    """Map each message key in the Maildir ``root`` to (path, mtime)."""
    found: dict[str, tuple[Path, float]] = {}
    for sub in _SUBDIRS:
        try:
            entries = list(os.scandir(root / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            # Dot files are editors' and clients' temporaries, not mail.
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            found[_key_of(entry.name)] = (Path(entry.path), mtime)
    return found


class MaildirSource:
    """``MailSource`` over a local Maildir++ tree rooted at ``root``.

    ``folders`` maps outcome keys (``mailbot.ports.PROCESSED`` ...) to folder
    names, as for IMAP. The inbox and its ``new/cur/tmp`` are created if absent.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        folders: Mapping[str, str] | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self._root = Path(root)
        self._folders = dict(DEFAULT_FOLDERS if folders is None else folders)
        self._poll_interval = poll_interval
        try:
            self._box = mailbox.Maildir(self._root, create=True)
        except OSError as exc:
            raise MailboxError(f"cannot open Maildir {self._root}: {exc}") from exc
        self._handed_out: set[str] = set()

    def __repr__(self) -> str:
        return f"MaildirSource({str(self._root)!r})"

    @property
    def root(self) -> Path:
        return self._root

    def folder_name(self, folder: str) -> str:
        """The configured name for an outcome key, or ``folder`` itself."""
        return self._folders.get(folder, folder)

    def folder_path(self, folder: str) -> Path:
        """Directory of the Maildir++ folder for an outcome key or name."""
        name = self.folder_name(folder)
        return self._root / ("." + encode_mutf7(name.replace("/", ".")).decode("ascii"))

    def fetch_new(self, limit: int | None = None) -> Iterator[RawMail]:
        """Yield the inbox's messages oldest first (by file time, then name)."""
        try:
            listing = _scan(self._root)
        except OSError as exc:
            raise MailboxError(f"cannot list Maildir {self._root}: {exc}") from exc
        # Forget keys that left the inbox so the set does not grow forever.
        self._handed_out &= listing.keys()
        ordered = sorted(listing.items(), key=lambda item: (item[1][1], item[0]))
        if limit is not None:
            ordered = ordered[: max(limit, 0)]
        for key, (path, _mtime) in ordered:
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                # Moved to cur/ by a mail client or removed meanwhile: look again.
                again = _scan(self._root).get(key)
                if again is None:
                    continue
                raw = again[0].read_bytes()
            except OSError as exc:
                raise MailboxError(f"cannot read {path}: {exc}") from exc
            self._handed_out.add(key)
            yield RawMail(key=f"maildir:{key}", mailbox=str(self._root), uidvalidity=None, uid=None, raw=raw)

    def move(self, mail: RawMail, folder: str) -> None:
        """Rename the message file into the folder (created if absent).

        Idempotent: if the message is already in that folder, nothing happens.
        """
        if not mail.key.startswith("maildir:"):
            raise MailboxError(f"{mail.key} does not come from a Maildir")
        key = mail.key.removeprefix("maildir:")
        target = self.folder_path(folder)
        try:
            # add_folder creates new/cur/tmp and the "maildirfolder" marker
            # (Maildir++), and leaves an existing folder alone.
            self._box.add_folder(target.name[1:])
            source = _scan(self._root).get(key)
            if source is None:
                if key in _scan(target):
                    return
                raise MailboxError(f"{mail.key} is neither in the inbox nor in {self.folder_name(folder)!r}")
            path = source[0]
            destination = target / path.parent.name / path.name
            os.rename(path, destination)
            _fsync_dir(destination.parent)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise MailboxError(f"cannot move {mail.key} to {target}: {exc}") from exc
        self._handed_out.discard(key)
        log.debug("moved %s to %s", mail.key, target.name)

    def move_many(self, mails: Sequence[RawMail], folder: str) -> None:
        """Move each mail as :meth:`move` does (a rename is local: there is
        no round trip to save, only the contract to keep)."""
        for mail in mails:
            self.move(mail, folder)

    def _has_unseen(self) -> bool:
        return bool(_scan(self._root).keys() - self._handed_out)

    def wait_for_new(self, timeout: float) -> bool:
        """Poll every ``poll_interval`` s for a message not yet handed out."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._has_unseen():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(self._poll_interval, remaining))

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""


class MaildirSender:
    """``MailSender`` that delivers into a local Maildir (the demo's "sent" box).

    Delivery follows the Maildir protocol through ``mailbox.Maildir.add``:
    write into ``tmp/``, then rename into ``new/``; the file and ``new/`` are
    then fsynced so an acknowledged send survives a crash.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    def __repr__(self) -> str:
        return f"MaildirSender({str(self._root)!r})"

    def send(self, message: EmailMessage) -> None:
        try:
            box = mailbox.Maildir(self._root, create=True)
            key = box.add(message)
            path = self._root / "new" / key
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            _fsync_dir(path.parent)
        except OSError as exc:
            # A full or read-only disk may be fixed by the operator: retry later.
            raise TransientDeliveryError(f"cannot deliver into Maildir {self._root}: {exc}") from exc
        log.debug("delivered %s into %s", message.get("Message-ID", "(no Message-ID)"), self._root)

    def messages(self) -> list[EmailMessage]:
        """Every message delivered so far, parsed (for the demo and tests)."""
        box = mailbox.Maildir(self._root, create=True)
        return [
            email.message_from_bytes(box.get_bytes(key), _class=EmailMessage, policy=email.policy.default)
            for key in sorted(box.keys())
        ]

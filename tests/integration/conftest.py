"""Real servers on loopback for the adapter and end-to-end tests.

Fixtures exported here (reuse them, do not start servers of your own):

* ``dovecot`` (session): a real Dovecot IMAP server (Debian ``dovecot-imapd``)
  on 127.0.0.1, a :class:`DovecotServer` with helpers to create users, APPEND
  mail, read a folder, list folders and kick a user's connections.
* ``imap_account``: a fresh, empty mailbox (user ``t-<uuid>@example.test``);
  yields the ``ImapSettings`` to reach it over plain loopback IMAP.
* ``smtp_server``: a real aiosmtpd server (threaded ``Controller``) that
  records what it accepts and can be switched to reply 451 / 550 or be
  stopped (connection refused): a :class:`SmtpTestServer`.

Every test in this directory is marked ``integration``. When Dovecot is not
installed the IMAP tests are skipped with the install hint, except under
``CI=true`` where that is a failure.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import string
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from imapclient import IMAPClient

from mailbot.adapters.imap import ImapSettings
from mailbot.adapters.smtp import SmtpSettings

HERE = Path(__file__).resolve().parent
INSTALL_HINT = "install it with: apt-get install dovecot-imapd (or run `make test` as root)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _skip_or_fail(reason: str) -> None:
    """Missing system parts skip on a developer machine but fail in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; tiny race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll 127.0.0.1:port with growing delays until it accepts a connection."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    return False


def _which(program: str) -> str | None:
    # /usr/sbin is often missing from a non-root PATH.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
    return shutil.which(program, path=path)


# ---------------------------------------------------------------- Dovecot


@dataclass(frozen=True)
class FolderMessage:
    """One message as read back from a folder (peeked, so never marked seen)."""

    uid: int
    flags: tuple[bytes, ...]
    raw: bytes = field(repr=False)

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, _class=EmailMessage, policy=email.policy.default)


Account = str | ImapSettings


def _username(account: Account) -> str:
    return account.username if isinstance(account, ImapSettings) else account


@dataclass
class DovecotServer:
    """A running Dovecot and helpers that act as "another mail client"."""

    port: int
    tls_port: int | None
    password: str
    ca_file: str | None
    config_path: Path
    log_path: Path
    doveadm: str | None
    host: str = "127.0.0.1"

    def new_user(self) -> str:
        return f"t-{uuid.uuid4().hex[:12]}@example.test"

    def settings(self, account: Account | None = None, **overrides: Any) -> ImapSettings:
        """Plain loopback settings for the user, with short test timeouts."""
        base = ImapSettings(
            host=self.host,
            port=self.port,
            security="none",
            username=_username(account) if account is not None else self.new_user(),
            password=self.password,
            timeout=10.0,
            connect_timeout=5.0,
            connect_attempts=3,
            backoff_initial=0.05,
            backoff_max=0.2,
            poll_interval=0.2,
        )
        return replace(base, **overrides)

    def tls_settings(self, account: Account, security: str = "tls", **overrides: Any) -> ImapSettings:
        """Verified TLS settings (test CA); skips when no certificate is set up."""
        if self.tls_port is None or self.ca_file is None:
            pytest.skip("TLS tests need the 'trustme' package for a throw-away CA")
        port = self.tls_port if security == "tls" else self.port
        values: dict[str, Any] = {"security": security, "port": port, "ca_file": self.ca_file}
        values.update(overrides)
        return self.settings(account, **values)

    @contextmanager
    def client(self, account: Account) -> Iterator[IMAPClient]:
        """A separate logged-in IMAP connection (another mail client)."""
        with IMAPClient(self.host, port=self.port, ssl=False, timeout=10) as client:
            client.login(_username(account), self.password)
            yield client

    def append(self, account: Account, raw: bytes, folder: str = "INBOX", flags: tuple[bytes, ...] = ()) -> int:
        """APPEND ``raw`` to the folder (created if absent); returns its UID (RFC 4315 APPENDUID)."""
        with self.client(account) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw, flags=flags)
        match = re.search(rb"APPENDUID \d+ (\d+)", response)
        assert match, f"no APPENDUID in {response!r}"
        return int(match.group(1))

    def read_folder(self, account: Account, folder: str = "INBOX") -> list[FolderMessage]:
        """Every message in the folder, oldest first; [] if the folder does not exist."""
        with self.client(account) as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            if not uids:
                return []
            data = client.fetch(uids, ["FLAGS", "BODY.PEEK[]"])
        return [FolderMessage(uid, tuple(data[uid][b"FLAGS"]), bytes(data[uid][b"BODY[]"])) for uid in uids]

    def folders(self, account: Account) -> list[str]:
        """Folder names as a client shows them (decoded from modified UTF-7)."""
        with self.client(account) as client:
            return sorted(name for _flags, _delim, name in client.list_folders())

    def uidvalidity(self, account: Account, folder: str = "INBOX") -> int:
        with self.client(account) as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def kick(self, account: Account) -> None:
        """Cut the user's connections from the server side (``doveadm kick``)."""
        if self.doveadm is None:
            pytest.skip("doveadm is not installed")
        subprocess.run(
            [self.doveadm, "-c", str(self.config_path), "kick", _username(account)],
            check=True,
            capture_output=True,
            timeout=10,
        )


def _make_certificate(tmp: Path) -> tuple[str, str, str] | None:
    """(ca_file, cert_file, key_file) from a throw-away trustme CA, or None."""
    try:
        import trustme
    except ImportError:
        return None
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return str(ca_file), str(cert_file), str(key_file)


def _mail_owner() -> tuple[int, int, str | None]:
    """uid, gid for the mail files, and the user name Dovecot's helpers run as.

    Dovecot refuses to give mail access as root, so as root the mail belongs to
    "nobody" and Dovecot keeps its own default helper users; as another user,
    everything runs as that user.
    """
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
            return nobody.pw_uid, nobody.pw_gid, None
        except KeyError:
            return 65534, 65534, None
    return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name


def _start_dovecot(
    binary: str, tmp: Path, certificate: tuple[str, str, str] | None
) -> tuple[subprocess.Popen[bytes], int, int | None, Path, Path]:
    uid, gid, run_as = _mail_owner()
    for sub in ("run", "state", "mail", "home"):
        (tmp / sub).mkdir(exist_ok=True)
    for sub in ("mail", "home"):
        if os.geteuid() == 0:
            os.chown(tmp / sub, uid, gid)
    imap_port = free_port()
    tls_port = free_port() if certificate else None
    if certificate:
        _ca, cert_file, key_file = certificate
        ssl_settings = f"ssl = yes\nssl_cert = <{cert_file}\nssl_key = <{key_file}"
    else:
        ssl_settings = "ssl = no"
    user_settings = f"default_internal_user = {run_as}\ndefault_login_user = {run_as}" if run_as else ""
    log_path = tmp / "dovecot.log"
    config = string.Template((HERE / "dovecot.conf.in").read_text()).substitute(
        base_dir=tmp / "run",
        state_dir=tmp / "state",
        log_path=log_path,
        ssl_settings=ssl_settings,
        mail_dir=tmp / "mail",
        home_dir=tmp / "home",
        uid=uid,
        gid=gid,
        user_settings=user_settings,
        chroot_setting="chroot =" if run_as else "",
        password=_PASSWORD,
        imap_port=imap_port,
        imaps_port=tls_port or 0,
    )
    config_path = tmp / "dovecot.conf"
    config_path.write_text(config)
    with open(tmp / "dovecot.stderr", "wb") as stderr:  # the child keeps its own copy
        process = subprocess.Popen([binary, "-F", "-c", str(config_path)], stdout=subprocess.DEVNULL, stderr=stderr)
    return process, imap_port, tls_port, config_path, log_path


def _stop_dovecot(process: subprocess.Popen[bytes], tmp: Path) -> None:
    """Stop by our own child's pid and wait until the master pid file is gone."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    pid_file = tmp / "run" / "master.pid"
    deadline = time.monotonic() + 5
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


# One random password per session, so a leak into logs is detectable.
_PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    binary = _which("dovecot")
    if binary is None:
        _skip_or_fail(f"Dovecot is not installed; {INSTALL_HINT}")
    assert binary is not None
    # Not pytest's tmp_path: its parent is 0700, and Dovecot's auth and mail
    # processes run as other users and must traverse the directory.
    tmp = Path(tempfile.mkdtemp(prefix="mailbot-dovecot-"))
    tmp.chmod(0o755)
    process = None
    try:
        certificate = _make_certificate(tmp)
        for _attempt in range(3):
            process, port, tls_port, config_path, log_path = _start_dovecot(binary, tmp, certificate)
            ready = wait_for_port(port, process=process) and (
                tls_port is None or wait_for_port(tls_port, process=process)
            )
            if ready:
                break
            # Most likely someone took the port between our probe and the
            # bind: stop and try other ports.
            _stop_dovecot(process, tmp)
            process = None
        if process is None:
            log = (tmp / "dovecot.log").read_text(errors="replace") if (tmp / "dovecot.log").exists() else ""
            err = (tmp / "dovecot.stderr").read_text(errors="replace")
            _skip_or_fail(f"Dovecot did not start: {(err + log)[-2000:]}")
        yield DovecotServer(
            port=port,
            tls_port=tls_port,
            password=_PASSWORD,
            ca_file=certificate[0] if certificate else None,
            config_path=config_path,
            log_path=log_path,
            doveadm=_which("doveadm"),
        )
    finally:
        if process is not None:
            _stop_dovecot(process, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def imap_account(dovecot: DovecotServer) -> ImapSettings:
    """Settings for a brand-new user: an empty INBOX nobody else touches."""
    return dovecot.settings(dovecot.new_user())


# ------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedMail:
    """What the test SMTP server accepted: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes = field(repr=False)

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, _class=EmailMessage, policy=email.policy.default)


class RecordingHandler:
    """aiosmtpd handler with the fault switches of Postfix's smtp-sink(1).

    ``mode``: "accept"; "451" (temporary failure after DATA, 451 4.3.0);
    "550" (recipient refused at RCPT, 550 5.1.1).
    """

    def __init__(self) -> None:
        self.mode = "accept"
        self.received: list[ReceivedMail] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.mode == "550":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.mode == "451":
            return "451 4.3.0 Temporary failure, please try again later"
        self.received.append(ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 2.0.0 Ok: queued"


class SmtpTestServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again."""

    host = "127.0.0.1"

    def __init__(self, **controller_kwargs: Any) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self._kwargs = controller_kwargs
        self._controller: Controller | None = None
        #: (user, password) accepted by AUTH, when the server offers it.
        self.credentials: tuple[str, str] | None = None

    @property
    def mode(self) -> str:
        return self.handler.mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in ("accept", "451", "550"):
            raise ValueError(value)
        self.handler.mode = value

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is None:
            # A new Controller each time: a stopped one has closed its loop.
            controller = Controller(self.handler, hostname=self.host, port=self.port, **self._kwargs)
            controller.start()
            self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """Connections are refused inside the block, accepted again after."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def settings(self, **overrides: Any) -> SmtpSettings:
        base = SmtpSettings(host=self.host, port=self.port, security="none", timeout=5.0)
        return replace(base, **overrides)


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


SMTP_USER = "mailbot"
SMTP_PASSWORD = f"smtp-{uuid.uuid4().hex}"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    # handled=False: let aiosmtpd answer 235 or 535 itself.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_tls_server(tmp_path: Path) -> Iterator[tuple[SmtpTestServer, str]]:
    """An SMTP server that requires STARTTLS with a throw-away CA's certificate.

    Yields the server and the CA file that makes its certificate verify. After
    STARTTLS it offers AUTH PLAIN/LOGIN for ``server.credentials`` (user,
    password); AUTH is optional, unauthenticated mail is accepted too.
    """
    trustme = pytest.importorskip("trustme", reason="TLS tests need the 'trustme' package")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = SmtpTestServer(tls_context=context, require_starttls=True, authenticator=_authenticate)
    server.credentials = (SMTP_USER, SMTP_PASSWORD)
    server.start()
    try:
        yield server, str(ca_file)
    finally:
        server.stop()

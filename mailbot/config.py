"""Configuration: ``config.toml`` read into frozen, validated settings.

Adapter-level module: reads the configuration file, the secret files and the
environment it is given; never imported by the core (the core gets plain
values from the service layer). Validation is done by pydantic v2 models with
``extra="forbid"`` and strict types, and every error is reported as
``[section] key: problem`` with a close match suggested for a misspelt key
(like Mailman's ``schema.cfg``, which is also where the commented
``config.example.toml`` comes from).

Secrets (IMAP/SMTP passwords, OAuth2 tokens, a database URL with a password)
never sit in the file: the file names an environment variable
(``password_env``) or a file (``password_file``, e.g. a Docker/Podman secret
or systemd ``LoadCredential=``). They are held in :class:`Secret`, whose
``repr``/``str`` is ``***``, so a dump of the settings, a traceback with
locals or a log line cannot show them; ``Secret.reveal()`` gives the value.

Relative paths resolve against the folder of the configuration file; with no
file at all (``load_config(None, env)``) they resolve against the current
folder, which gives the embedded default: Maildir in ``var/mail/inbox``,
SQLite in ``var/mailbot.db``, replies written to the Maildir
``var/mail/outbox`` -- no server needed.

Example::

    settings = load_config(Path("config.toml"), os.environ)
    settings.imap.password.reveal()        # the IMAP password (str)
    settings.database.dsn.reveal()         # the URL to give SQLAlchemy
"""

from __future__ import annotations

import difflib
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mailbot.errors import ConfigError
from mailbot.masking import MIN_SECRET_LENGTH
from mailbot.ports import IGNORED, PROCESSED, QUARANTINE, is_loopback
from mailbot.rulefiles import DEFAULT_RULES_DIR


class Secret:
    """A password or token. Shows as ``***`` everywhere; ``reveal()`` gives it.

    >>> s = Secret("hunter22")
    >>> f"{s} {s!r}", s.reveal()
    ('*** ***', 'hunter22')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would write the value in clear to wherever the pickle goes.
        raise TypeError("a Secret cannot be pickled")


# --- field types ----------------------------------------------------------------


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base", Path.cwd())
    value = Path(value).expanduser()
    return value if value.is_absolute() else (Path(base) / value).resolve()


#: A path; relative ones resolve against the configuration file's folder.
#: Lax (not strict) only so that TOML strings become ``Path`` objects.
ConfigPath = Annotated[Path, Field(strict=False), AfterValidator(_resolve_path)]

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+$")


def _address(value: str) -> str:
    # A bare addr-spec (RFC 5322 §3.4.1): no display name, no angle brackets,
    # no comments. These addresses go into headers we write (loop prevention
    # compares against them), so anything fancier is refused.
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not a plain e-mail address (write it as name@domain)")
    return value


Address = Annotated[str, AfterValidator(_address)]
Addresses = Annotated[tuple[Address, ...], Field(strict=False)]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: str) -> str:
    # Do not echo the value: a user who pasted the password itself into
    # password_env would otherwise see it in the error (and in the logs).
    if not _ENV_NAME.match(value):
        raise ValueError("must be the NAME of an environment variable (letters, digits, _), not its value")
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _clock(value: str) -> str:
    if not _CLOCK.match(value):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (24 h)")
    return value


ClockTime = Annotated[str, AfterValidator(_clock)]
PositiveSeconds = Annotated[float, Field(gt=0)]
PositiveHours = Annotated[float, Field(gt=0)]





def _table() -> Any:
    """Default of a section: an empty table, validated like a given one.

    Not ``Section()``: an instance built when this module is imported would
    resolve its relative paths against the folder current at import time,
    not against the configuration file's folder.
    """
    return Field(default_factory=dict)


class _Section(BaseModel):
    # strict: a TOML string is not silently turned into a number or a boolean
    # ("false" would be true); validate_default: defaults go through the same
    # path resolution as given values.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True)


# --- sections ---------------------------------------------------------------------


class FoldersSection(_Section):
    processed: str = "Traité"
    quarantine: str = "Quarantaine"
    ignored: str = "Ignoré"

    def as_mapping(self) -> dict[str, str]:
        """Outcome key (``mailbot.ports.PROCESSED`` ...) to folder name."""
        return {PROCESSED: self.processed, QUARANTINE: self.quarantine, IGNORED: self.ignored}


class MailboxSection(_Section):
    kind: Literal["maildir", "imap", "stdin"] = "maildir"
    path: ConfigPath = Path("var/mail/inbox")
    folders: FoldersSection = _table()


class ImapSection(_Section):
    host: str = ""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["tls", "starttls", "none"] = "tls"
    ca_file: ConfigPath | None = None
    username: str = ""
    auth: Literal["login", "xoauth2"] = "login"
    password_env: EnvName | None = None
    password_file: ConfigPath | None = None
    token_command: str | None = None
    token_file: ConfigPath | None = None
    inbox: str = "INBOX"
    idle: bool = True
    batch_size: Annotated[int, Field(ge=1)] = 50
    timeout_seconds: PositiveSeconds = 60.0

    _password: Secret | None = PrivateAttr(default=None)

    @field_validator("token_command")
    @classmethod
    def _splittable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                argv = shlex.split(value)
            except ValueError as exc:  # unbalanced quotes
                raise ValueError(f"cannot be split into a command line ({exc})") from None
            if not argv:
                raise ValueError("is empty")
        return value

    @model_validator(mode="after")
    def _clear_text_only_on_loopback(self) -> ImapSection:
        if self.security == "none" and self.host and not is_loopback(self.host):
            raise ValueError(
                f"security 'none' sends the password and the mails in clear text; it is only "
                f"accepted for a loopback host, not {self.host!r} (use 'tls' or 'starttls')"
            )
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.security == "tls" else 143  # RFC 8314 §7.3 / RFC 9051

    @property
    def password(self) -> Secret | None:
        """The LOGIN password, when ``auth = "login"`` and the mailbox is IMAP."""
        return self._password

    def token_source(self) -> Callable[[], str] | None:
        """For ``auth = "xoauth2"``: a callable giving a fresh access token.

        Access tokens from Microsoft 365 / Google live about an hour, so the
        command is run (or the file read) at every connection rather than once
        at start. Each token obtained is registered with the log redaction.
        """
        if self.auth != "xoauth2":
            return None
        command, token_file = self.token_command, self.token_file

        def fetch() -> str:
            if command is not None:
                token = _run_token_command(command, self.timeout_seconds)
            else:
                assert token_file is not None
                token = token_file.read_text(encoding="utf-8").strip()
            if not token:
                raise ConfigError("the XOAUTH2 token source gave an empty token")
            from mailbot.logsetup import register_secret

            register_secret(token)
            return token

        return fetch


def _run_token_command(command: str, timeout: float) -> str:
    # No shell: the command line is split like a POSIX shell would, so quoting
    # works but no expansion or redirection happens.
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"imap token_command could not run: {type(exc).__name__}") from None
    if done.returncode != 0:
        # stderr is not quoted: a token helper may print the token or a refresh
        # token in its diagnostics.
        raise ConfigError(f"imap token_command exited with status {done.returncode}")
    return done.stdout.strip()


class SmtpSection(_Section):
    kind: Literal["smtp", "maildir"] = "maildir"
    path: ConfigPath = Path("var/mail/outbox")
    host: str = ""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: ConfigPath | None = None
    username: str | None = None
    password_env: EnvName | None = None
    password_file: ConfigPath | None = None
    timeout_seconds: PositiveSeconds = 60.0

    _password: Secret | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _clear_text_only_on_loopback(self) -> SmtpSection:
        if self.security == "none" and self.host and not is_loopback(self.host):
            raise ValueError(
                f"security 'none' sends the mails (and any password) in clear text; it is only "
                f"accepted for a loopback host, not {self.host!r} (use 'starttls' or 'tls')"
            )
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        # RFC 8314 §3.3 (implicit TLS submission), RFC 6409 (submission).
        return {"tls": 465, "starttls": 587, "none": 25}[self.security]

    @property
    def password(self) -> Secret | None:
        """The SMTP AUTH password, when ``username`` is set and ``kind = "smtp"``."""
        return self._password


class BotSection(_Section):
    address: Address = "mailbot@localhost"
    from_name: str = "Support informatique SAMU"
    own_addresses: Addresses = ()
    message_id_domain: str = ""
    ticket_prefix: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{0,15}$")] = "SAMU"

    @model_validator(mode="before")
    @classmethod
    def _default_message_id_domain(cls, data: Any) -> Any:
        # Our Message-IDs use the bot's own domain unless told otherwise
        # (RFC 5322 §3.6.4: the right side should identify the host).
        if isinstance(data, dict) and not data.get("message_id_domain"):
            address = data.get("address", "mailbot@localhost")
            if isinstance(address, str) and "@" in address:
                data = {**data, "message_id_domain": address.rsplit("@", 1)[1]}
        return data

    @field_validator("from_name")
    @classmethod
    def _no_control_chars(cls, value: str) -> str:
        # Goes into the From header we write: a CR or LF here would inject headers.
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters (line breaks, tabs)")
        return value

    @property
    def all_addresses(self) -> frozenset[str]:
        """The bot's own addresses, lower-cased: mail from them is never answered."""
        return frozenset(a.lower() for a in (self.address, *self.own_addresses))


class DatabaseSection(_Section):
    url: str = "sqlite:///var/mailbot.db"
    url_env: EnvName | None = None

    _dsn: Secret | None = PrivateAttr(default=None)
    _password_part: Secret | None = PrivateAttr(default=None)

    @property
    def dsn(self) -> Secret:
        """The URL to connect with (from ``url_env`` when set), as a Secret."""
        assert self._dsn is not None, "settings not built by load_config"
        return self._dsn


class PollSection(_Section):
    interval_seconds: PositiveSeconds = 60.0
    max_attempts: Annotated[int, Field(ge=1)] = 3


class DialogueSection(_Section):
    max_asks: Annotated[int, Field(ge=0)] = 2
    reminder_after_hours: PositiveHours = 24.0
    incomplete_after_days: Annotated[float, Field(gt=0)] = 3.0
    replies_per_sender_per_hour: Annotated[int, Field(ge=1)] = 5
    check_interval_seconds: PositiveSeconds = 300.0


class OutboxSection(_Section):
    interval_seconds: PositiveSeconds = 30.0
    first_retry_seconds: PositiveSeconds = 300.0
    max_retry_seconds: PositiveSeconds = 4000.0
    give_up_after_hours: PositiveHours = 120.0

    @model_validator(mode="after")
    def _ordered(self) -> OutboxSection:
        if self.max_retry_seconds < self.first_retry_seconds:
            raise ValueError("max_retry_seconds must not be smaller than first_retry_seconds")
        return self


_DAYS = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BusinessHoursSection(_Section):
    days: Annotated[tuple[_DAYS, ...], Field(strict=False, min_length=1)] = ("mon", "tue", "wed", "thu", "fri")
    start: ClockTime = "08:00"
    end: ClockTime = "18:00"

    @model_validator(mode="after")
    def _ordered(self) -> BusinessHoursSection:
        if self.end <= self.start:
            raise ValueError("end must be later than start")
        return self


class DeadlinesSection(_Section):
    level1_hours: PositiveHours = 24.0
    level2_hours: PositiveHours = 72.0
    level3_hours: PositiveHours = 120.0
    business_hours: BusinessHoursSection | None = None


class StaffSection(_Section):
    digest_to: Addresses = ()
    alert_to: Addresses = ()
    digest_times: Annotated[tuple[ClockTime, ...], Field(strict=False)] = ("07:30", "13:30")
    timezone: str = "Europe/Paris"
    deadlines: DeadlinesSection = _table()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'Europe/Paris')") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class RulesSection(_Section):
    path: ConfigPath = DEFAULT_RULES_DIR


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    file: ConfigPath | None = None


class Settings(_Section):
    """The whole configuration. Build it with :func:`load_config`."""

    mailbox: MailboxSection = _table()
    imap: ImapSection = _table()
    smtp: SmtpSection = _table()
    bot: BotSection = _table()
    database: DatabaseSection = _table()
    poll: PollSection = _table()
    dialogue: DialogueSection = _table()
    outbox: OutboxSection = _table()
    staff: StaffSection = _table()
    rules: RulesSection = _table()
    logging: LoggingSection = _table()

    #: Where the settings came from (None: the embedded default).
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        return self._source

    def secrets(self) -> list[Secret]:
        """Every secret these settings hold (for the log redaction filter).

        For the database, the password inside the URL, not the whole URL: the
        rest of it (driver, host, file) is what an operator needs to read.
        """
        found = [self.imap.password, self.smtp.password, self.database._password_part]
        return [s for s in found if s is not None]


# --- loading -------------------------------------------------------------------

#: Keys that would put a secret inline; refused with a pointer to the right key.
_INLINE_SECRET_KEYS = {"password", "passwd", "pass", "secret", "token", "access_token", "client_secret"}


def load_config(path: Path | None, env: Mapping[str, str]) -> Settings:
    """Read, validate and resolve the configuration.

    ``path`` None gives the embedded default (everything local under ``var/``
    of the current folder). ``env`` is the environment to take secrets from
    (``os.environ`` in production, a dict in tests).

    Raises ``ConfigError`` listing every problem, one per line, each naming
    the section and the key.
    """
    settings, problems = _load(path, env)
    if problems:
        where = str(path) if path is not None else "default configuration"
        raise ConfigError(f"{where}:\n  " + "\n  ".join(problems))
    assert settings is not None
    return settings


def check_config(path: Path | None, env: Mapping[str, str]) -> list[str]:
    """Every problem found, as lines for ``mailbot check-config`` (empty: all good).

    Besides what :func:`load_config` refuses, reports what would only fail
    later: a rules folder, a token command or a log folder that is missing.
    """
    settings, problems = _load(path, env)
    if settings is None:
        return problems
    if not settings.rules.path.is_dir():
        problems.append(f"[rules] path: folder {str(settings.rules.path)!r} does not exist")
    if settings.logging.file is not None and not settings.logging.file.parent.is_dir():
        problems.append(f"[logging] file: folder {str(settings.logging.file.parent)!r} does not exist")
    imap = settings.imap
    if settings.mailbox.kind == "imap" and imap.auth == "xoauth2":
        if imap.token_command is not None:
            argv = shlex.split(imap.token_command)
            if not argv or shutil.which(argv[0]) is None:
                problems.append("[imap] token_command: the program is not found or not executable")
        elif imap.token_file is not None and not imap.token_file.is_file():
            problems.append(f"[imap] token_file: {str(imap.token_file)!r} does not exist")
    for secret in settings.secrets():
        if 0 < len(secret.reveal()) < MIN_SECRET_LENGTH:
            problems.append(
                f"a secret is shorter than {MIN_SECRET_LENGTH} characters: it cannot be masked in logs"
            )
    return problems


def _load(path: Path | None, env: Mapping[str, str]) -> tuple[Settings | None, list[str]]:
    if path is None:
        data: dict[str, Any] = {}
        base = Path.cwd()
    else:
        path = Path(path)
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            return None, [f"configuration file {str(path)!r} not found"]
        except OSError as exc:
            return None, [f"configuration file {str(path)!r} cannot be read: {exc.strerror}"]
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message names the line and column ("... (at line 3, column 7)").
            return None, [f"not valid TOML: {exc}"]
        base = path.resolve().parent

    problems = _inline_secrets(data, ())
    if problems:
        return None, problems
    try:
        settings = Settings.model_validate(data, context={"base": base})
    except ValidationError as exc:
        return None, [_describe(error) for error in exc.errors()]
    settings._source = path.resolve() if path is not None else None
    problems = _resolve_secrets(settings, env, base)
    return settings, problems


def _inline_secrets(data: Mapping[str, Any], where: tuple[str, ...]) -> list[str]:
    problems = []
    for key, value in data.items():
        if isinstance(value, dict):
            problems += _inline_secrets(value, (*where, key))
        elif key.lower() in _INLINE_SECRET_KEYS:
            section = ".".join(where) or "top level"
            what = "token_command or token_file" if "token" in key.lower() else "password_env or password_file"
            problems.append(
                f"[{section}] {key}: secrets are never written in the configuration file; "
                f"use {what} to name an environment variable or a file that holds it"
            )
    return problems


def _describe(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    # Sections are tables; the last element is the key, unless it is a list index.
    index = ""
    while loc and loc[-1].isdigit():
        index = f"[{loc.pop()}]" + index
    if error["type"] == "extra_forbidden":
        *section, key = loc
        model = _model_at(section)
        known = list(model.model_fields) if model is not None else []
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (known keys: {', '.join(known)})"
        if not section:
            return f"[{key}]: unknown section{suggestion}"
        return f"[{'.'.join(section)}] {key}: unknown key{suggestion}"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if not loc:
        return f"top level: {message}"
    if _model_at(loc) is not None:
        # The error is about a whole section: not a table, or a check that
        # spans several of its keys (a model ``after`` validator).
        if error["type"] in ("model_type", "dict_type", "model_attributes_type"):
            return f"[{'.'.join(loc)}]: must be a table ([{'.'.join(loc)}] header), not a single value"
        return f"[{'.'.join(loc)}]: {message}"
    *section, key = loc
    model = _model_at(section)
    if model is None or key not in model.model_fields:
        # A model-level check (after validator) of the section ``loc``.
        return f"[{'.'.join(loc)}]: {message}"
    shown = ""
    if "input" in error and not key.endswith(("_env", "_file", "_command")) and error["type"] != "value_error":
        shown = f" (got {_short(error['input'])})"
    return f"[{'.'.join(section) or 'top level'}] {key}{index}: {message}{shown}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        target = field.annotation
        candidates = getattr(target, "__args__", (target,))
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return model


def _resolve_secrets(settings: Settings, env: Mapping[str, str], base: Path) -> list[str]:
    problems: list[str] = []
    imap, smtp = settings.imap, settings.smtp

    if settings.mailbox.kind == "imap":
        if not imap.host:
            problems.append("[imap] host: required when [mailbox] kind = 'imap'")
        if not imap.username:
            problems.append("[imap] username: required when [mailbox] kind = 'imap'")
        problems += _check_ca_file("imap", imap.ca_file)
        if imap.auth == "login":
            if imap.token_command is not None or imap.token_file is not None:
                problems.append("[imap] token_command/token_file: only used with auth = 'xoauth2'")
            secret = _read_secret("imap", imap.password_env, imap.password_file, env, problems)
            imap._password = secret
        else:
            if (imap.token_command is None) == (imap.token_file is None):
                problems.append("[imap] auth = 'xoauth2' needs exactly one of token_command or token_file")
            if imap.password_env is not None or imap.password_file is not None:
                problems.append("[imap] password_env/password_file: not used with auth = 'xoauth2'")

    if smtp.kind == "smtp":
        if not smtp.host:
            problems.append("[smtp] host: required when [smtp] kind = 'smtp'")
        problems += _check_ca_file("smtp", smtp.ca_file)
        if smtp.username is not None:
            smtp._password = _read_secret("smtp", smtp.password_env, smtp.password_file, env, problems)
        elif smtp.password_env is not None or smtp.password_file is not None:
            problems.append("[smtp] password_env/password_file: set username too (SMTP AUTH needs both)")

    problems += _resolve_database(settings.database, env, base)
    return problems


def _check_ca_file(section: str, ca_file: Path | None) -> list[str]:
    if ca_file is not None and not ca_file.is_file():
        return [f"[{section}] ca_file: {str(ca_file)!r} does not exist"]
    return []


def _read_secret(
    section: str, env_name: str | None, file: Path | None, env: Mapping[str, str], problems: list[str]
) -> Secret | None:
    if env_name is not None and file is not None:
        problems.append(f"[{section}] password_env and password_file: set only one of them")
        return None
    if env_name is not None:
        value = env.get(env_name)
        if not value:
            problems.append(f"[{section}] password_env: environment variable {env_name} is not set or empty")
            return None
        return Secret(value)
    if file is not None:
        return _read_secret_file(f"[{section}] password_file", file, problems)
    problems.append(f"[{section}] set password_env or password_file (the password is never written inline)")
    return None


def _read_secret_file(where: str, file: Path, problems: list[str]) -> Secret | None:
    try:
        info = file.stat()
    except OSError:
        problems.append(f"{where}: {str(file)!r} does not exist or cannot be read")
        return None
    # Like ssh with private keys: a secret readable by other accounts is
    # refused, so that a wrong mode is fixed rather than ignored.
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(
            f"{where}: {str(file)!r} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run chmod 600 on it"
        )
        return None
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{where}: {str(file)!r} cannot be read ({type(exc).__name__})")
        return None
    # Files written with `echo secret > file` end with a newline that is not
    # part of the secret.
    value = text.rstrip("\r\n")
    if not value:
        problems.append(f"{where}: {str(file)!r} is empty")
        return None
    return Secret(value)


def _resolve_database(db: DatabaseSection, env: Mapping[str, str], base: Path) -> list[str]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if db.url_env is not None:
        raw = env.get(db.url_env)
        if not raw:
            return [f"[database] url_env: environment variable {db.url_env} is not set or empty"]
        origin = f"environment variable {db.url_env}"
    else:
        raw = db.url
        origin = "[database] url"
    try:
        url = make_url(raw)
    except ArgumentError:
        return [f"{origin}: not a database URL (e.g. 'sqlite:///var/mailbot.db', 'postgresql+psycopg://host/db')"]
    if db.url_env is None and url.password:
        return ["[database] url: holds a password; put the whole URL in an environment variable and name it in url_env"]
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # SQLAlchemy reads sqlite:///relative/path against the process's current
        # folder; we read it against the configuration file's folder instead.
        file = Path(url.database).expanduser()
        if not file.is_absolute():
            url = url.set(database=str((base / file).resolve()))
    if url.password:
        db._password_part = Secret(str(url.password))
    db._dsn = Secret(url.render_as_string(hide_password=False))
    return []


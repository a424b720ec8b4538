"""Configuration loading (mailbot.config) and the documented example (config.example.toml)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from mailbot.config import Secret, Settings, check_config, load_config
from mailbot.errors import ConfigError
from mailbot.rulefiles import DEFAULT_RULES_DIR

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def secret_file(tmp_path: Path, value: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def error_of(path: Path | None, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    return str(caught.value)


IMAP = """
    [mailbox]
    kind = "imap"
    [imap]
    host = "imap.example.org"
    username = "support"
"""


# --- the embedded default ---------------------------------------------------------


def test_no_config_file_gives_a_local_setup_under_var(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_config(None, {})
    assert settings.mailbox.kind == "maildir"
    assert settings.mailbox.path == tmp_path / "var" / "mail" / "inbox"
    assert settings.smtp.kind == "maildir"
    assert settings.smtp.path == tmp_path / "var" / "mail" / "outbox"
    assert settings.database.dsn.reveal() == f"sqlite:///{tmp_path}/var/mailbot.db"
    assert settings.rules.path == DEFAULT_RULES_DIR
    assert settings.mailbox.folders.as_mapping() == {
        "processed": "Traité", "quarantine": "Quarantaine", "ignored": "Ignoré"}
    assert settings.poll.max_attempts == 3
    assert settings.dialogue.max_asks == 2
    assert settings.staff.digest_times == ("07:30", "13:30")
    assert settings.bot.ticket_prefix == "SAMU"
    assert settings.bot.message_id_domain == "localhost"
    assert settings.source is None
    assert check_config(None, {}) == []


def test_settings_are_frozen():
    settings = load_config(None, {})
    with pytest.raises(ValidationError, match="frozen"):
        settings.poll.interval_seconds = 1  # type: ignore[misc]


# --- the example file ---------------------------------------------------------------


def test_example_loads_without_any_secret_set():
    settings = load_config(EXAMPLE, {})
    assert settings.rules.path == REPO / "rules"
    assert settings.mailbox.path == REPO / "var" / "mail" / "inbox"
    assert check_config(EXAMPLE, {}) == []


def _example_keys() -> dict[str, list[tuple[str, bool, str]]]:
    """Keys of the example per section: (key, commented out, previous non-blank line)."""
    keys: dict[str, list[tuple[str, bool, str]]] = {}
    section, previous = "", ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if header := re.match(r"^#?\s*\[([\w.]+)\]\s*$", stripped):
            section = header.group(1)
            keys.setdefault(section, [])
        elif key := re.match(r"^(#\s*)?(\w+)\s*=", stripped):
            keys.setdefault(section, []).append((key.group(2), bool(key.group(1)), previous))
        if stripped:
            previous = stripped
    return keys


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for name, field in model.model_fields.items():
        candidates = getattr(field.annotation, "__args__", (field.annotation,))
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is not None:
            out += _fields(sub, f"{prefix}.{name}" if prefix else name)
        else:
            out.append((prefix, name))
    return out


def test_every_setting_is_documented_in_the_example():
    documented = {section: {k for k, _, _ in keys} for section, keys in _example_keys().items()}
    missing = [f"[{s}] {k}" for s, k in _fields(Settings) if k not in documented.get(s, set())]
    assert missing == []


def test_example_names_no_key_the_loader_does_not_know():
    known = set(_fields(Settings))
    unknown = [f"[{s}] {k}" for s, keys in _example_keys().items() for k, _, _ in keys if (s, k) not in known]
    assert unknown == []


def test_every_example_key_has_a_comment_above_it():
    undocumented = [f"[{s}] {k}" for s, keys in _example_keys().items()
                    for k, commented, previous in keys if not previous.startswith("#")]
    assert undocumented == []


# --- unknown keys and wrong types -------------------------------------------------------


def test_unknown_key_named_with_its_section_and_a_suggestion(tmp_path):
    message = error_of(write(tmp_path, """
        [poll]
        intervall_seconds = 30
    """))
    assert "[poll] intervall_seconds: unknown key (did you mean 'interval_seconds'?)" in message


def test_unknown_key_in_a_nested_table(tmp_path):
    message = error_of(write(tmp_path, """
        [staff.deadlines]
        level_1_hours = 4
    """))
    assert "[staff.deadlines] level_1_hours: unknown key (did you mean 'level1_hours'?)" in message


def test_unknown_section_named(tmp_path):
    message = error_of(write(tmp_path, """
        [imapp]
        host = "x"
    """))
    assert "[imapp]: unknown section (did you mean 'imap'?)" in message


def test_every_problem_reported_at_once(tmp_path):
    message = error_of(write(tmp_path, """
        [poll]
        interval_seconds = "60"
        [dialogue]
        max_asks = true
        [bot]
        adress = "x@y.fr"
    """))
    assert "[poll] interval_seconds: input should be a valid number (got '60')" in message
    assert "[dialogue] max_asks: input should be a valid integer (got True)" in message
    assert "[bot] adress: unknown key (did you mean 'address'?)" in message


@pytest.mark.parametrize("text, expected", [
    ('[mailbox]\nkind = "pop3"', "[mailbox] kind: input should be 'maildir', 'imap' or 'stdin'"),
    ('[imap]\nidle = "yes"', "[imap] idle: input should be a valid boolean"),
    ('[imap]\nport = 70000', "[imap] port: input should be less than or equal to 65535"),
    ('[staff]\ndigest_times = ["7h30"]', "[staff] digest_times[0]: '7h30' is not a time of day as HH:MM"),
    ('[staff]\ntimezone = "Paris"', "[staff] timezone: 'Paris' is not an IANA time zone"),
    ('[staff]\ndigest_to = ["Support <a@b.fr>"]', "[staff] digest_to[0]: 'Support <a@b.fr>' is not a plain e-mail"),
    ('[bot]\nticket_prefix = "samu-"', "[bot] ticket_prefix: string should match pattern"),
    ('[bot]\nfrom_name = "x\\r\\nBcc: a@b.fr"', "[bot] from_name: must not contain control characters"),
    ('[outbox]\nfirst_retry_seconds = 600\nmax_retry_seconds = 60', "[outbox]: max_retry_seconds must not be smaller"),
    ('imap = 3', "[imap]: must be a table"),
    ('[imap]\ntoken_command = "get-token \'unclosed"', "[imap] token_command: cannot be split"),
    ('[logging]\nlevel = "verbose"', "[logging] level: input should be 'DEBUG'"),
])
def test_wrong_values_rejected_with_section_and_key(tmp_path, text, expected):
    assert expected in error_of(write(tmp_path, text))


def test_not_toml_reports_the_line(tmp_path):
    assert "line 2" in error_of(write(tmp_path, '[poll]\ninterval_seconds = = 3\n'))


def test_missing_file_reported(tmp_path):
    assert "not found" in error_of(tmp_path / "nope.toml")


# --- security: clear text only on loopback ----------------------------------------------


@pytest.mark.parametrize("section", ["imap", "smtp"])
def test_security_none_refused_for_a_remote_host(tmp_path, section):
    message = error_of(write(tmp_path, f'[{section}]\nhost = "mail.example.org"\nsecurity = "none"\n'))
    assert f"[{section}]: security 'none'" in message and "loopback" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_security_none_accepted_on_loopback(tmp_path, host):
    settings = load_config(write(tmp_path, f'[imap]\nhost = "{host}"\nsecurity = "none"\n'), {})
    assert settings.imap.effective_port == 143


# --- secrets -----------------------------------------------------------------------------


def test_inline_password_refused_with_the_right_advice(tmp_path):
    message = error_of(write(tmp_path, IMAP + 'password = "hunter22"\n'))
    assert "[imap] password:" in message and "password_env or password_file" in message
    assert "hunter22" not in message


def test_inline_token_refused(tmp_path):
    message = error_of(write(tmp_path, IMAP + 'auth = "xoauth2"\ntoken = "ya29.abc"\n'))
    assert "[imap] token:" in message and "token_command or token_file" in message
    assert "ya29" not in message


def test_password_from_environment_is_a_secret(tmp_path):
    path = write(tmp_path, IMAP + 'password_env = "MB_IMAP_PW"\n')
    settings = load_config(path, {"MB_IMAP_PW": "s3cret-pw"})
    assert isinstance(settings.imap.password, Secret)
    assert settings.imap.password.reveal() == "s3cret-pw"
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings)
    assert str(settings.imap.password) == repr(settings.imap.password) == "***"
    assert f"{settings.imap.password}" == "***"


def test_missing_environment_variable_reported_by_load_and_check(tmp_path):
    path = write(tmp_path, IMAP + 'password_env = "MB_IMAP_PW"\n')
    assert "[imap] password_env: environment variable MB_IMAP_PW is not set" in error_of(path)
    assert any("MB_IMAP_PW is not set" in p for p in check_config(path, {}))


def test_a_password_pasted_into_password_env_is_not_echoed(tmp_path):
    message = error_of(write(tmp_path, IMAP + 'password_env = "my pass!word"\n'))
    assert "[imap] password_env: must be the NAME of an environment variable" in message
    assert "pass!word" not in message


def test_password_file_relative_to_the_config_folder(tmp_path):
    secret_file(tmp_path, "from-a-file")
    settings = load_config(write(tmp_path, IMAP + 'password_file = "secret"\n'), {})
    assert settings.imap.password.reveal() == "from-a-file"  # trailing newline dropped


def test_password_file_readable_by_others_refused(tmp_path):
    secret_file(tmp_path, "from-a-file", mode=0o644)
    message = error_of(write(tmp_path, IMAP + 'password_file = "secret"\n'))
    assert "readable by other users (mode 644)" in message and "chmod 600" in message


def test_no_password_source_for_login_refused(tmp_path):
    assert "[imap] set password_env or password_file" in error_of(write(tmp_path, IMAP))


def test_both_password_sources_refused(tmp_path):
    secret_file(tmp_path, "x")
    message = error_of(write(tmp_path, IMAP + 'password_env = "A"\npassword_file = "secret"\n'), {"A": "x"})
    assert "set only one of them" in message


def test_secrets_not_needed_for_an_unused_section(tmp_path):
    # IMAP configured but the mailbox is a Maildir: no password asked for.
    settings = load_config(write(tmp_path, '[imap]\nhost = "h"\npassword_env = "UNSET_VAR"\n'), {})
    assert settings.imap.password is None


def test_xoauth2_token_from_a_command_fetched_at_each_call(tmp_path):
    counter = tmp_path / "n"
    script = tmp_path / "token.sh"
    script.write_text(f'#!/bin/sh\necho x >> "{counter}"\necho "tok-$(wc -l < "{counter}" | tr -d " ")"\n')
    script.chmod(0o700)
    path = write(tmp_path, IMAP + f'auth = "xoauth2"\ntoken_command = "{script}"\n')
    settings = load_config(path, {})
    source = settings.imap.token_source()
    assert source is not None and settings.imap.password is None
    assert source() == "tok-1"
    assert source() == "tok-2"


def test_xoauth2_failing_command_does_not_quote_its_output(tmp_path):
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\necho refresh-token-XYZ >&2\nexit 3\n")
    script.chmod(0o700)
    settings = load_config(write(tmp_path, IMAP + f'auth = "xoauth2"\ntoken_command = "{script}"\n'), {})
    with pytest.raises(ConfigError) as caught:
        settings.imap.token_source()()
    assert "status 3" in str(caught.value) and "XYZ" not in str(caught.value)


def test_xoauth2_needs_exactly_one_token_source(tmp_path):
    assert "exactly one of token_command or token_file" in error_of(write(tmp_path, IMAP + 'auth = "xoauth2"\n'))


def test_check_config_reports_a_missing_token_program(tmp_path):
    path = write(tmp_path, IMAP + 'auth = "xoauth2"\ntoken_command = "/nonexistent/get-token"\n')
    assert any("token_command" in p and "not found" in p for p in check_config(path, {}))


def test_missing_ca_file_reported(tmp_path):
    path = write(tmp_path, IMAP + 'password_env = "P"\nca_file = "ca.pem"\n')
    problems = check_config(path, {"P": "pw-pw-pw"})
    assert problems == [f"[imap] ca_file: '{tmp_path / 'ca.pem'}' does not exist"]


def test_smtp_password_only_with_a_username(tmp_path):
    path = write(tmp_path, '[smtp]\nkind = "smtp"\nhost = "smtp.example.org"\nusername = "bot"\n'
                           'password_env = "SMTP_PW"\n')
    assert load_config(path, {"SMTP_PW": "pw-smtp"}).smtp.password.reveal() == "pw-smtp"
    assert load_config(path, {"SMTP_PW": "pw-smtp"}).smtp.effective_port == 587
    assert "SMTP_PW is not set" in error_of(path)


# --- database ---------------------------------------------------------------------------------


def test_sqlite_path_relative_to_the_config_folder(tmp_path):
    settings = load_config(write(tmp_path, '[database]\nurl = "sqlite:///data/bot.db"\n'), {})
    assert settings.database.dsn.reveal() == f"sqlite:///{tmp_path}/data/bot.db"


def test_database_url_with_password_must_come_from_the_environment(tmp_path):
    message = error_of(write(tmp_path, '[database]\nurl = "postgresql+psycopg://u:pw@db/x"\n'))
    assert "[database] url: holds a password" in message and "url_env" in message
    path = write(tmp_path, '[database]\nurl_env = "DB_URL"\n')
    settings = load_config(path, {"DB_URL": "postgresql+psycopg://u:p%40ss-word@db/x"})
    assert settings.database.dsn.reveal() == "postgresql+psycopg://u:p%40ss-word@db/x"
    assert [s.reveal() for s in settings.secrets()] == ["p@ss-word"]
    assert "DB_URL is not set" in error_of(path)


# --- paths and misc ------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    conf = tmp_path / "etc"
    conf.mkdir()
    settings = load_config(write(conf, """
        [mailbox]
        path = "../mail"
        [rules]
        path = "rules"
        [logging]
        file = "/var/log/mailbot.log"
    """), {})
    assert settings.mailbox.path == tmp_path / "mail"
    assert settings.rules.path == conf / "rules"
    assert settings.logging.file == Path("/var/log/mailbot.log")
    assert settings.source == conf / "config.toml"
    assert f"[rules] path: folder '{conf / 'rules'}' does not exist" in check_config(conf / "config.toml", {})


def test_bot_addresses(tmp_path):
    settings = load_config(write(tmp_path, """
        [bot]
        address = "Support-SAMU@chu.example.fr"
        own_addresses = ["ancien-support@chu.example.fr"]
    """), {})
    assert settings.bot.message_id_domain == "chu.example.fr"
    assert settings.bot.all_addresses == {"support-samu@chu.example.fr", "ancien-support@chu.example.fr"}


def test_business_hours_optional(tmp_path):
    settings = load_config(write(tmp_path, """
        [staff.deadlines.business_hours]
        days = ["mon", "tue"]
        start = "09:00"
        end = "17:30"
    """), {})
    hours = settings.staff.deadlines.business_hours
    assert hours is not None and hours.days == ("mon", "tue") and hours.end == "17:30"
    assert load_config(None, {}).staff.deadlines.business_hours is None
    assert "[staff.deadlines.business_hours] days[0]" in error_of(
        write(tmp_path, '[staff.deadlines.business_hours]\ndays = ["monday"]\n'))

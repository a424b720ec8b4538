"""Logging configuration (mailbot.logsetup): format, Message-ID field, redaction."""

from __future__ import annotations

import logging

import pytest

from mailbot.config import load_config
from mailbot.logsetup import (
    QUIET_LOGGERS,
    configure_logging,
    mail_logger,
    register_secret,
)

NIR = "253072B07300470"


@pytest.fixture
def log_file(tmp_path):
    """Configure logging into a file; restore the root logger afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in QUIET_LOGGERS})
    pw_file = tmp_path / "pw"
    pw_file.write_text("Imap-Pa55word!\n")
    pw_file.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(
        '[mailbox]\nkind = "imap"\n[imap]\nhost = "127.0.0.1"\nusername = "bot"\npassword_file = "pw"\n'
        '[logging]\nlevel = "DEBUG"\nfile = "mailbot.log"\n'
    )
    handler = configure_logging(load_config(config, {}))
    path = tmp_path / "mailbot.log"

    def read() -> str:
        handler.flush()
        return path.read_text(encoding="utf-8")

    yield read
    root.removeHandler(handler)
    handler.close()
    root.setLevel(saved[0])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_lines_about_a_mail_carry_its_message_id(log_file):
    log = mail_logger(logging.getLogger("mailbot.dialogue"), "<CAF3x@mail.gmail.com>")
    log.info("ticket %s opened", "SAMU-000123")
    logging.getLogger("mailbot.other").info("poll done")
    lines = log_file().splitlines()
    assert lines[0].split(" ", 3)[3] == "<CAF3x@mail.gmail.com> mailbot.dialogue: ticket SAMU-000123 opened"
    assert lines[1].split(" ", 3)[3] == "- mailbot.other: poll done"


def test_forged_message_id_cannot_start_a_fake_line(log_file):
    mail_logger(logging.getLogger("mailbot.x"), "<a@b>\r\n2024-01-01 CRITICAL fake").warning("hello")
    mail_logger(logging.getLogger("mailbot.x"), None).info("no id")
    lines = log_file().splitlines()
    assert len(lines) == 2
    assert "<a@b>??2024-01-01?CRITICAL?fake" in lines[0]
    assert "<no-message-id>" in lines[1]


def test_personal_data_masked_at_every_level(log_file):
    log = logging.getLogger("mailbot.test")
    log.info("patient %s né le 12/03/1980 tél 06 12 34 56 78", NIR)
    log.error("again NIR %s", NIR)
    text = log_file()
    assert NIR not in text and "12/03/1980" not in text and "06 12 34 56 78" not in text
    assert text.count("[NIR]") == 2 and "[DATE_NAISSANCE]" in text and "[TEL]" in text


def test_address_local_part_masked_from_warning_up(log_file):
    log = logging.getLogger("mailbot.test")
    log.info("reply queued for jean.dupont@chu.example.fr")
    log.warning("reply refused for jean.dupont@chu.example.fr")
    info, warning = log_file().splitlines()
    assert "jean.dupont@chu.example.fr" in info
    assert "jean.dupont" not in warning and "***@chu.example.fr" in warning


def test_configured_and_registered_secrets_masked(log_file):
    register_secret("ya29.oauth-token-value")
    log = logging.getLogger("mailbot.test")
    log.info("login with Imap-Pa55word! and token ya29.oauth-token-value")
    text = log_file()
    assert "Imap-Pa55word!" not in text and "ya29.oauth-token-value" not in text
    assert "login with *** and token ***" in text


def test_traceback_in_the_log_is_masked(log_file):
    log = logging.getLogger("mailbot.test")
    try:
        raise ValueError(f"header value quotes {NIR} and patient@hopital.fr")
    except ValueError:
        log.exception("parse failed")
    text = log_file()
    assert "Traceback (most recent call last)" in text and "ValueError: header value quotes [NIR]" in text
    assert NIR not in text and "patient@" not in text


def test_library_loggers_stay_quiet_even_at_debug(log_file):
    logging.getLogger("imapclient.imaplib").debug("< * 1 FETCH (BODY[] {1234} whole patient mail")
    logging.getLogger("mailparser").debug("Filename ordonnance_dupont.pdf")
    logging.getLogger("mailbot.test").debug("our own debug line")
    text = log_file()
    assert "FETCH" not in text and "ordonnance" not in text
    assert "our own debug line" in text


def test_configuring_twice_keeps_one_handler(log_file, tmp_path):
    root = logging.getLogger()
    before = len(root.handlers)
    handler = configure_logging(load_config(None, {}))
    try:
        assert len(root.handlers) == before
    finally:
        root.removeHandler(handler)


def test_default_goes_to_stderr_not_stdout(capfd):
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(load_config(None, {}))
    try:
        logging.getLogger("mailbot.test").warning("something for the operator")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out, err = capfd.readouterr()
    assert out == "" and "something for the operator" in err

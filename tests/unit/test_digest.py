"""The staff digest on a store of 200 tickets of every status, read back with an HTML parser;
the criticity-1 alert; the digest drawn to PNG with headless Chromium (test-artifacts/)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import importlib.util
from pathlib import Path

import lxml.html
import pytest

from mailbot.adapters.store import Store
from mailbot.digest import (
    build_digest,
    build_digest_message,
    check_templates,
    load_templates,
    render_alert,
    render_digest,
)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
UTC = dt.UTC


def _tool():
    spec = importlib.util.spec_from_file_location("render_digest_png", REPO / "tools" / "render_digest_png.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()
NOW = TOOL.DEMO_NOW
SINCE = NOW - dt.timedelta(hours=18)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store.open(f"sqlite:///{tmp_path_factory.mktemp('digest')}/mailbot.db")
    TOOL.fill_store(s, 200, now=NOW)
    yield s
    s.close()


@pytest.fixture(scope="module")
def tickets(store):
    with store.read() as tx:
        return tx.list_tickets()


@pytest.fixture(scope="module")
def rendered(tickets):
    digest = build_digest(tickets, now=NOW, since=SINCE, tz="Europe/Paris")
    subject, text, html = render_digest(digest)
    return digest, subject, text, html, lxml.html.document_fromstring(html)


def _numbers(nodes):
    return [n.get("data-ticket") for n in nodes]


def test_the_store_holds_every_status(store, tickets):
    with store.read() as tx:
        statuses = tx.ticket_counts("status")
    assert len(tickets) == 200
    assert set(statuses) == {"nouveau", "en attente d'informations", "à traiter", "pris en charge",
                             "escaladé", "résolu", "clos", "incomplet"}


def test_new_tickets_grouped_by_criticity(store, rendered):
    _, _, _, _, doc = rendered
    with store.read() as tx:
        for level in (1, 2, 3):
            expected = {t.number for t in tx.list_tickets(created_since=SINCE, criticity=level)}
            group = doc.xpath(f'//h3[@data-group="new-{level}"]')[0]
            assert int(group.get("data-count")) == len(expected)
            # the tickets between this heading and the next one
            members = group.xpath("following-sibling::*")
            shown = []
            for node in members:
                if node.tag in ("h2", "h3"):
                    break
                shown += _numbers([node] if node.get("data-ticket") else [])
            assert set(shown) == expected and len(shown) == len(expected)
        total = tx.count_tickets(created_since=SINCE)
    new = doc.xpath('//h2[@data-section="new"]')[0]
    assert int(new.get("data-count")) == total > 0


def _section(doc, name):
    head = doc.xpath(f'//h2[@data-section="{name}"]')[0]
    shown = []
    for node in head.xpath("following-sibling::*"):
        if node.tag == "h2":
            break
        if node.get("data-ticket"):
            shown.append(node.get("data-ticket"))
    return int(head.get("data-count")), shown


def test_overdue_section_matches_the_store(store, rendered):
    _, _, _, _, doc = rendered
    with store.read() as tx:
        expected = [t.number for t in sorted(tx.list_tickets(overdue_at=NOW), key=lambda t: (t.deadline, t.id))]
    count, shown = _section(doc, "overdue")
    assert expected, "the demo data must have overdue tickets"
    assert count == len(expected) and shown == expected   # most late first
    for node in doc.xpath('//h2[@data-section="overdue"]/following-sibling::div[@data-ticket]')[:len(expected)]:
        assert node.get("data-overdue") == "yes"
        assert "EN RETARD" in node.text_content()   # a word, not colour alone


def test_due_soon_waiting_and_incomplete_match_the_store(store, rendered):
    _, _, _, _, doc = rendered
    with store.read() as tx:
        soon = {t.number for t in tx.list_tickets(due_before=NOW + dt.timedelta(hours=4))
                if t.deadline >= NOW}
        waiting = {t.number for t in tx.list_tickets(waiting_for_writer=True)}
        incomplete = {t.number for t in tx.list_tickets(incomplete=True, open_only=True)}
    for name, expected in (("due-soon", soon), ("waiting", waiting), ("incomplete", incomplete)):
        count, shown = _section(doc, name)
        assert count == len(expected) and set(shown) == expected, name
    assert waiting and incomplete
    first_waiting = doc.xpath('//h2[@data-section="waiting"]/following-sibling::div[@data-ticket]')[0]
    assert "Sans réponse depuis" in first_waiting.text_content()


def _counts(doc, kind):
    table = doc.xpath(f'//table[@data-counts="{kind}"]')[0]
    return {row.xpath("td[@data-key]")[0].get("data-key"): int(row.xpath("td[@data-n]")[0].get("data-n"))
            for row in table.xpath(".//tr")}


def test_counts_per_site_case_and_criticity_match_the_store(store, rendered):
    _, _, _, _, doc = rendered
    with store.read() as tx:
        sites = {(k or "?"): n for k, n in tx.ticket_counts("site_code", open_only=True).items()}
        cases = {(k or "?"): n for k, n in tx.ticket_counts("cas", open_only=True).items()}
        crits = {(f"C{k}" if k else "C–"): n for k, n in tx.ticket_counts("criticity", open_only=True).items()}
        open_total = tx.count_tickets(open_only=True)
    assert _counts(doc, "site") == sites and "?" in sites   # unknown site stays visible
    assert _counts(doc, "case") == cases
    assert _counts(doc, "criticity") == crits
    assert int(doc.xpath('//h2[@data-section="counts"]')[0].get("data-count")) == open_total


def test_each_ticket_line_has_title_site_age_deadline_and_fields(rendered):
    digest, _, text, _, doc = rendered
    line = digest.overdue[0]
    node = doc.xpath(f'//div[@data-ticket="{line.number}"]')[0]
    content = " ".join(node.text_content().split())
    for part in (line.number, line.title, line.site_code, f"âge {line.age}", f"échéance {line.deadline}",
                 line.summary):
        assert part in content
    text_line = next(x for x in text.splitlines() if x.startswith(f"[C{line.criticity}] {line.number} "))
    for part in (line.title, line.site_code, line.age, line.deadline, "EN RETARD"):
        assert part in text_line


def test_html_is_mail_safe(rendered):
    _, _, _, html, doc = rendered
    assert not doc.xpath("//img | //link | //script | //style | //iframe")
    assert "http://" not in html and "https://" not in html
    assert doc.xpath('//meta[@name="viewport"]')


def test_text_version_lists_the_same_sections(rendered):
    digest, subject, text, _, _ = rendered
    assert text.startswith(subject)
    assert f"== EN RETARD ({len(digest.overdue)}) ==" in text
    assert f"== NOUVEAUX TICKETS ({digest.new_total}) ==" in text
    assert "\n-- \n" in text   # RFC 3676 signature separator kept


def test_digest_message_headers(rendered):
    digest = rendered[0]
    msg = build_digest_message(digest, from_addr="mailbot@si-samu.test", to_addrs=["desk@si-samu.test"])
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["To"] == "desk@si-samu.test"
    assert parsed["From"].addresses[0].addr_spec == "mailbot@si-samu.test"
    again = build_digest_message(digest, from_addr="mailbot@si-samu.test", to_addrs=["desk@si-samu.test"])
    assert again["Message-ID"] == msg["Message-ID"]   # same digest, same id: a re-send is recognised
    with pytest.raises(ValueError):
        build_digest_message(digest, from_addr="mailbot@si-samu.test", to_addrs=[])


def test_alert_for_a_criticity_1_ticket(store):
    with store.transaction() as tx:
        t = tx.create_ticket(
            now=NOW, status="à traiter", kind="incident", cas="A", criticity=1,
            title="Réception appels – 15 sans appel (réception nulle)", site_code="VAL", site_name="CH de Valmont",
            writer_addr="arm@ch-valmont.test", writer_name="ARM", thread_subject="URGENT",
            fields={"impacted_lines": ["15"], "reception": "nulle",
                    "otn_tests": "patient né le 03/04/1987 rappelé au 06 12 34 56 78"},
            deadline=NOW + dt.timedelta(hours=24))
    msg = render_alert(t, now=NOW, from_addr="mailbot@si-samu.test", to_addrs=["astreinte@si-samu.test"])
    body = msg.get_content()
    assert msg["Subject"].startswith(f"[ALERTE C1] {t.number} VAL")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "lignes : 15" in body.lower() or "Lignes : 15" in body
    assert "mar. 17/11 07:30" in body   # deadline in Paris time
    assert len(body.splitlines()) < 25   # short, for a phone


def test_shipped_templates_check_clean():
    assert check_templates(load_templates()) == []


def test_a_broken_template_is_named(tickets):
    bad = load_templates()
    bad = type(bad)(html=bad.html.replace("digest.overdue", "digest.overdu"), text=bad.text, alert=bad.alert)
    problems = check_templates(bad)
    assert problems and "digest.html.j2" in str(problems[0])


def test_render_png_with_headless_chromium(rendered):
    """Draws the digest for people to look at: test-artifacts/digest-phone.png (420 px)
    and digest-desktop.png (1100 px)."""
    if TOOL.find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no PNG of the digest")
    html = rendered[3]
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "digest.html"
    page.write_text(html, encoding="utf-8")
    for name, width, height in (("digest-phone.png", 420, 2400), ("digest-desktop.png", 1100, 1400)):
        out = TOOL.render_png(page, ARTIFACTS / name, width=width, height=height)
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == width   # IHDR width

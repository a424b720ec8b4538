"""Render the staff digest to a PNG with headless Chromium, to look at it.

Usage::

    python tools/render_digest_png.py OUT.png [--width 420] [--height 2400]
                                      [--store sqlite:///var/mailbot.db] [--tickets 200]

Without ``--store`` a throw-away SQLite store is filled with ``--tickets``
deterministic fictional tickets of every status (the same generator the
digest test uses); with it, the digest of that store's tickets is drawn.
The HTML is written next to the PNG (``OUT.html``).

Needs Debian's ``chromium`` package (``apt-get install chromium``); the
browser runs with no network use of its own (no sync, no component update,
no background networking) and a throw-away profile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

UTC = dt.UTC
#: The fixed clock of the demo data (a Monday morning, Paris winter time).
DEMO_NOW = dt.datetime(2026, 11, 16, 6, 30, tzinfo=UTC)   # 07:30 in Paris

STATUSES = ("nouveau", "en attente d'informations", "à traiter", "pris en charge",
            "escaladé", "résolu", "clos", "incomplet")
SITES = (("VAL", "CH de Valmont"), ("ORV", "CHR d'Orval"), ("EXE", "SAMU 31 – CHU Exemple"),
         ("MAU", "CHU de Maurienval"), ("BRE", "CH de Brécy"), ("ALP", "SAMU 74 – CH Alpes-Léman"),
         ("RIB", "CH de Ribeauval"), (None, None))
#: (cas, application, fields, subject, criticity by policy §4)
SAMPLES = (
    ("A", None, {"impacted_lines": ["15", "116117"], "reception": "nulle"}, "URGENT plus d'appels", 1),
    ("A", None, {"impacted_lines": ["15"], "reception": "partielle"}, "RE: TR: appels qui coupent", 1),
    ("B", "portail", {"features": ["main courante"], "impact_scope": "partiel", "browser": "firefox",
                      "browser_version": "115.3.1esr"}, "la main courante ne s'affiche plus", 2),
    ("B", "portail", {"features": ["module patients"], "impact_scope": "total",
                      "error_message": "Service indisponible (503)"}, "Portail - module patients en erreur", 1),
    ("B", "bandeau", {"features": ["bouton Transférer"], "bandeau_state": "partiel", "impact_scope": "partiel"},
     "bandeau - transfert ne marche plus", 2),
    ("B", "bandeau", {"bandeau_state": "total", "impact_scope": "total"}, "BANDEAU HS", 1),
    ("B", "nice", {"features": ["réécoute"], "impact_scope": "unitaire", "browser": "edge",
                   "browser_version": "118"}, "Réécoute qui plante", 3),
    ("B", "statistiques", {"features": ["export CSV"], "impact_scope": "unitaire"}, "Export CSV vide", 3),
    ("B", "selfcare", {"requested_action": "activation", "routing_name": "DEBORD_SAMU31_VERS_SAMU81"},
     "URGENT activation routage de secours", 1),
    ("C", None, {"equipment": "téléphone fixe du poste 4"}, "téléphone poste 4 redémarre en boucle", 2),
    ("B", "portail", {"features": ["messagerie instantanée"], "impact_scope": "unitaire"},
     "TR: messagerie instantanée KO sous Edge", 3),
    ("D", None, {}, "casque qui grésille", None),
)
NAMES = ("Alice Martin", "Bruno Petit", "Chloé Durand", "David Moreau", "Emma Girard")


def fill_store(store: Any, n: int = 200, *, seed: int = 4, now: dt.datetime = DEMO_NOW) -> None:
    """Create ``n`` tickets of every status (deterministic), with events, via the store's API."""
    from mailbot.deadlines import deadline
    from mailbot.titles import make_title

    rng = random.Random(seed)
    with store.transaction() as tx:
        for i in range(n):
            cas, app, fields, subject, level = SAMPLES[rng.randrange(len(SAMPLES))]
            code, name = SITES[rng.randrange(len(SITES))]
            status = STATUSES[rng.randrange(len(STATUSES))] if cas != "D" else rng.choice(("résolu", "clos"))
            # A desk's backlog: finished tickets span the last days, open ones
            # are mostly recent (a few stragglers make the overdue section).
            if status in ("résolu", "clos"):
                age_minutes = rng.randint(60, 60 * 24 * 9)
            else:
                age_minutes = min(int(rng.expovariate(1 / (60 * 16))) + 5, 60 * 24 * 6)
            created = now - dt.timedelta(minutes=age_minutes)
            title = make_title(cas, app, fields, subject, is_request=False)
            t = tx.create_ticket(
                now=created, status="nouveau", kind="incident", cas=cas, application=app, criticity=level,
                title=title, site_code=code, site_name=name, writer_addr=f"user{i}@ch-valmont.test",
                writer_name=rng.choice(NAMES), thread_subject=subject, fields=dict(fields),
                deadline=deadline(level, created), filed_at=created,
            )
            tx.add_event(t.id, "created", at=created, data={"cas": cas, "criticity": level})
            at = created + dt.timedelta(minutes=rng.randint(1, 240))
            at = min(at, now)
            changes: dict[str, Any] = {"status": status}
            if status == "en attente d'informations":
                changes["last_question_at"] = at
                changes["missing"] = ["browser", "auth_mode"]
                tx.add_event(t.id, "question", at=at, data={"fields": ["browser", "auth_mode"], "round": 1})
            if status == "incomplet":
                changes.update(flagged_incomplete=True, missing=["browser_version"])
                tx.add_event(t.id, "flagged_incomplete", at=at, data={"missing": ["browser_version"]})
            if status in ("pris en charge", "escaladé", "résolu", "clos"):
                who = rng.choice(NAMES)
                changes.update(assignee=who, taken_at=at)
                tx.add_event(t.id, "taken", at=at, actor=who, data={"new": "pris en charge"})
            if status == "escaladé":
                changes["team"] = "n2-reseau"
                tx.add_event(t.id, "escalated", at=at, actor=changes["assignee"], data={"team": "n2-reseau"})
            if status in ("résolu", "clos"):
                done = min(at + dt.timedelta(hours=rng.randint(1, 100)), now)
                changes["resolved_at"] = done
                tx.add_event(t.id, "resolved", at=done, actor=changes.get("assignee", "x"), data={"new": "résolu"})
                if status == "clos":
                    changes["closed_at"] = done
                    tx.add_event(t.id, "closed", at=done, actor="x", data={"new": "clos"})
            if status == "nouveau":
                changes = {}
            if changes:
                tx.update_ticket(t.id, now=at, **changes)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render_png(html_file: Path, out: Path, *, width: int = 420, height: int = 2400, timeout: float = 90) -> Path:
    """Screenshot ``html_file`` with headless Chromium into ``out``."""
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailbot-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={out}",
               f"--window-size={width},{height}", html_file.resolve().as_uri()]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out


def digest_html(store: Any, now: dt.datetime, since: dt.datetime | None) -> str:
    from mailbot.digest import build_digest, render_digest

    with store.read() as tx:
        tickets = tx.list_tickets()
    return render_digest(build_digest(tickets, now=now, since=since, tz="Europe/Paris"))[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=420)
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument("--store", help="database URL of an existing store (default: demo data)")
    parser.add_argument("--tickets", type=int, default=200)
    args = parser.parse_args(argv)

    from mailbot.adapters.store import Store

    with tempfile.TemporaryDirectory(prefix="mailbot-digest-") as tmp:
        if args.store:
            store = Store.open(args.store)
            now = dt.datetime.now(UTC)
        else:
            store = Store.open(f"sqlite:///{tmp}/demo.db")
            fill_store(store, args.tickets)
            now = DEMO_NOW
        try:
            html = digest_html(store, now, now - dt.timedelta(hours=18))
        finally:
            store.close()
    html_file = args.out.with_suffix(".html")
    html_file.parent.mkdir(parents=True, exist_ok=True)
    html_file.write_text(html, encoding="utf-8")
    render_png(html_file, args.out, width=args.width, height=args.height)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: raw bytes -> verdict, on the dev corpus cycled to 2,000 mails, one process.

Prints start-up time to the first verdict, mails per second after load, and
peak RSS. Not a test: figures to compare between changes.

    .venv/bin/python bench/triage.py [--corpus DIR] [--mails N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "dev" / "messages"))
    ap.add_argument("--mails", type=int, default=2000)
    args = ap.parse_args()
    folder = Path(args.corpus)
    if not folder.is_dir():
        folder = ROOT / "samples"
    raws = [p.read_bytes() for p in sorted(folder.glob("*.eml"))]
    if not raws:
        sys.exit(f"no .eml in {folder}")

    from mailbot.parsing import parse_message
    from mailbot.rulefiles import load_rulebook
    from mailbot.triage import Engine

    engine = Engine(load_rulebook())
    engine.triage(parse_message(raws[0]))
    startup = time.perf_counter() - T0

    started = time.perf_counter()
    for i in range(args.mails):
        engine.triage(parse_message(raws[i % len(raws)]))
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"corpus            {folder} ({len(raws)} distinct mails)")
    print(f"mails             {args.mails}")
    print(f"startup_to_first  {startup:.2f} s   (target <= 3 s)")
    print(f"throughput        {args.mails / elapsed:.0f} mails/s   (target >= 300, one core)")
    print(f"peak_rss          {peak_mb:.0f} MB   (target <= 400 MB)")


if __name__ == "__main__":
    main()

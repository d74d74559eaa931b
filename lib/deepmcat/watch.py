"""``deepmcat watch``: every new series of an Orthanc PACS categorised as soon as it is complete.

Follows Orthanc's change feed (``/changes``): a series is categorised when Orthanc announces it stable
(``StableSeries``: no new instance for its ``StableAge``). The category is written back into Orthanc as
series metadata and into the same ``OUT/journal.jsonl`` and ``series.csv`` that ``deepmcat organize``
writes; ``report.html`` is rewritten when the feed falls quiet.

Restarts lose nothing and redo nothing: ``OUT/watch-state.json`` keeps the last change handled and the
series seen arriving but not yet stable, and the journal says which series are done. Orthanc 1.10 announces
pending series as stable when it stops cleanly; for a crash, series seen arriving are asked for their
``IsStable`` every ``recheck_seconds``. While Orthanc does not answer, the watcher waits and goes on from
where it was. A series that cannot be read is recorded with its reason and the feed moves on.

Polling rather than Orthanc's Python plugin (``OnStableSeries``): it needs nothing installed inside the
PACS, works against a remote Orthanc, and a slow categorisation never holds up Orthanc's own threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deepmcat.inference import Model
from deepmcat.jsonstore import JsonStore
from deepmcat.organize import JOURNAL, Organizer, exclusive
from deepmcat.orthanc import Orthanc
from deepmcat.sources import SourceUnavailable, redact_url

log = logging.getLogger(__name__)

STATE = "watch-state.json"


@dataclass(frozen=True)
class WatchConfig:
    #: seconds between polls of the change feed when it has nothing new
    poll_seconds: float = 1.0
    #: seconds between looks at series seen arriving but never announced stable (after an Orthanc crash)
    recheck_seconds: float = 30.0
    #: changes asked for at once
    page: int = 500
    #: a new OUT starts at Orthanc's next change instead of its first (series already stored are left out)
    from_now: bool = False
    #: rewrite report.html when the feed falls quiet after new series
    report: bool = True


@dataclass
class WatchStats:
    categorised: int = 0
    failed: int = 0
    skipped: int = 0  # announced again, but already in the journal
    outages: int = 0


class Watcher:
    def __init__(self, model: Model, orthanc: Orthanc, out: str | Path, config: WatchConfig = WatchConfig(),
                 show_phi: bool = False):
        self.orthanc, self.config, self.show_phi = orthanc, config, show_phi
        self.organizer = Organizer(model, orthanc, out, show_phi=show_phi, progress=False)
        self.out = Path(out)
        self.state = JsonStore(self.out / STATE)
        self.stats = WatchStats()

    def run(self, stop: Callable[[], bool] = lambda: False, once: bool = False) -> WatchStats:
        """Follow the feed until ``stop()`` is true (checked between series), or, with ``once``, until it has
        nothing more to give."""
        self.organizer.prepare()
        with exclusive(self.out):
            self._check_journal()
            finished = self.organizer.finished()
            state = self._start_state()
            last_recheck, added, rows_unreported = 0.0, False, None
            with open(self.out / JOURNAL, "a") as journal:
                while not stop():
                    try:
                        feed = self.orthanc.changes(state["last_seq"], self.config.page)
                        ready = self._read_feed(feed, state)
                        if time.time() - last_recheck >= self.config.recheck_seconds:
                            ready += [s for s in self._stable_pending(state) if s not in ready]
                            last_recheck = time.time()
                        for orthanc_id in ready:
                            if stop():
                                break
                            added |= self._categorise(orthanc_id, finished, journal)
                            state["pending"].pop(orthanc_id, None)
                        else:
                            state["last_seq"] = int(feed["Last"])
                        if feed["Changes"] or ready:
                            self._save_state(state)
                    except SourceUnavailable as exc:
                        self.stats.outages += 1
                        log.warning("%s; retrying in %.0f s", exc, max(self.config.poll_seconds, 2.0))
                        time.sleep(max(self.config.poll_seconds, 2.0))
                        continue
                    if added:
                        rows_unreported, added = self.organizer.publish(finished), False
                    if feed["Done"]:  # the feed fell quiet: the report catches up
                        self._report(rows_unreported)
                        rows_unreported = None
                        if once and not state["pending"]:
                            break
                        time.sleep(self.config.poll_seconds)
            self._report(rows_unreported)
        return self.stats

    def _check_journal(self) -> None:
        """Rows of another model would be left out of series.csv and never redone by the feed: refuse."""
        path = self.out / JOURNAL
        other = 0
        if path.is_file():
            for line in path.open():
                with contextlib.suppress(ValueError, AttributeError):
                    other += json.loads(line).get("model") != self.organizer.stamp
        if other:
            raise ValueError(f"{self.out} holds {other} series categorised by another model: run `deepmcat organize` "
                             f"with this model on {self.out} first (it categorises the archive again), then watch; "
                             "or use another --out")

    def _start_state(self) -> dict:
        state = self.state.read()
        url = redact_url(self.orthanc.url)
        if state and state.get("orthanc") != url:
            raise ValueError(f"{self.out / STATE} follows {state.get('orthanc')}, not {url}: use another --out")
        if not state:
            while True:
                try:
                    first = self.orthanc.last_change() if self.config.from_now else 0
                    break
                except SourceUnavailable as exc:
                    log.warning("%s; retrying", exc)
                    time.sleep(2.0)
            state = {"orthanc": url, "last_seq": first, "pending": {}}
            self._save_state(state)
        log.info("watching %s from change %d (%d series pending)", url, state["last_seq"], len(state["pending"]))
        return state

    def _save_state(self, state: dict) -> None:
        with self.state.updating() as data:
            data.clear()
            data.update(state)

    def _read_feed(self, feed: dict, state: dict) -> list[str]:
        """Series announced stable in this page, in order; series announced new join ``pending``."""
        ready: list[str] = []
        for change in feed["Changes"]:
            if change.get("ResourceType") != "Series":
                continue
            if change["ChangeType"] == "NewSeries":
                state["pending"].setdefault(change["ID"], time.time())
            elif change["ChangeType"] == "StableSeries" and change["ID"] not in ready:
                ready.append(change["ID"])
        return ready

    def _stable_pending(self, state: dict) -> list[str]:
        """Pending series Orthanc now calls stable (their announcement was lost); deleted ones are dropped."""
        stable = []
        for orthanc_id in list(state["pending"]):
            series = self.orthanc.series(orthanc_id)
            if series is None:
                state["pending"].pop(orthanc_id)
            elif series.get("IsStable"):
                stable.append(orthanc_id)
        return stable

    def _categorise(self, orthanc_id: str, finished: dict[str, dict], journal) -> bool:
        """Categorise one series unless the journal has it; True when a row was added."""
        tic = time.time()
        ref = self.orthanc.ref(orthanc_id, phi=self.show_phi)
        if ref is None:
            return False  # deleted before it was categorised
        if ref.uid in finished:
            self.stats.skipped += 1
            return False
        entry = self.organizer.entry(ref)
        row = entry["row"]
        if row["error"]:
            self.orthanc.set_metadata(orthanc_id, {"error": row["error"], "model": self.organizer.stamp})
            self.stats.failed += 1
            log.info("series %s: unreadable (%s)", orthanc_id, row["error"][:120])
        else:
            self.orthanc.set_metadata(orthanc_id, {"category": row["category"], "confidence": row["confidence"],
                                                   "model": self.organizer.stamp})
            self.stats.categorised += 1
            log.info("series %s: %s (confidence %s, %d units) in %.1f s", orthanc_id, row["category"],
                     row["confidence"], row["n_units"], time.time() - tic)
        finished[ref.uid] = self.organizer.record(journal, entry)
        return True

    def _report(self, rows: list[dict] | None) -> None:
        """Rewrite report.html from series.csv's rows, when there are new ones (None: nothing new)."""
        from deepmcat.report import write_report

        if rows is not None and self.config.report:
            write_report(self.out, rows, None, show_phi=self.show_phi)

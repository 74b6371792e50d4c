"""Blinded peer labels for a site's report (GIQuIC/NSQIP pattern, clinical-spec §11.2).

Peers are called "Peer A", "Peer B", ... in an order given by a keyed hash of
the site id with the edition id: stable within an edition (every chart and table
of every site report uses the same letter for the same peer), unrelated to site
names or sizes, and reshuffled in the next edition so letters cannot be tracked
across editions.
"""

from __future__ import annotations

import hashlib
import string


def _letters(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA ..."""
    out = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        out = string.ascii_uppercase[rem] + out
    return out


def peer_labels(site_ids: list[str], edition_id: str) -> dict[str, str]:
    """``site_id -> "Peer X"`` for every site, deterministic for one edition."""
    order = sorted(site_ids, key=lambda s: hashlib.sha256(f"{edition_id}\x00{s}".encode()).hexdigest())
    return {site: f"Peer {_letters(i)}" for i, site in enumerate(order)}

"""Sites that send REDCap exports: one folder (or zip) per extract with the records and the dictionary.

The extract holds the Data Export Tool files (``*_DATA_*.csv`` and
``*_DataDictionary_*.csv``, optionally an events CSV); the site file's
``redcap:`` block is the mapping (see ``redcap_poem.PoemRedcapMapping``) plus an
optional ``files:`` block with other name patterns.
"""

from __future__ import annotations

import fnmatch
import tempfile
from pathlib import Path

from poem_registry.adapters import canonical
from poem_registry.adapters.base import AdapterOutput, Delivery, DeliveryError
from poem_registry.adapters.files import read_folder_files, read_zip_members
from poem_registry.adapters.redcap import RedcapFormatError, read_data_dictionary, read_events
from poem_registry.adapters.redcap_poem import MappingError, to_exchange
from poem_registry.sites import SiteConfig

DEFAULT_FILES = {"records": "*_DATA_*.csv", "dictionary": "*DataDictionary*.csv", "events": "*_events*.csv"}

discover = canonical.discover


def _pick(members: dict[str, bytes], pattern: str, what: str, site_id: str, required: bool) -> str | None:
    matches = sorted(n for n in members if fnmatch.fnmatch(n, pattern))
    if not matches:
        if required:
            raise DeliveryError(f"site {site_id}: no REDCap {what} file matching {pattern!r} in the extract "
                                f"(files: {', '.join(sorted(members)) or 'none'})", rule="required_file")
        return None
    if len(matches) > 1:
        raise DeliveryError(f"site {site_id}: more than one REDCap {what} file matches {pattern!r}: {matches}",
                            rule="required_file")
    return matches[0]


def read(delivery: Delivery, site: SiteConfig) -> AdapterOutput:
    config = dict(site.redcap)
    patterns = {**DEFAULT_FILES, **(config.pop("files", None) or {})}
    path = Path(delivery.path)
    members = read_zip_members(path, site.site_id) if path.is_file() else read_folder_files(path, site.site_id)
    records_name = _pick(members, patterns["records"], "records", site.site_id, True)
    dictionary_name = _pick(members, patterns["dictionary"], "data dictionary", site.site_id, True)
    events_name = _pick(members, patterns["events"], "events", site.site_id, False)
    # The REDCap reader works on paths; the members were already checked, so write them to a private temp dir.
    with tempfile.TemporaryDirectory(prefix="poem_redcap_") as tmp:
        for name in filter(None, (records_name, dictionary_name, events_name)):
            (Path(tmp) / name).write_bytes(members[name])
        try:
            dictionary = read_data_dictionary(Path(tmp) / dictionary_name)
            events = read_events(Path(tmp) / events_name) if events_name else None
            output = to_exchange(Path(tmp) / records_name, config, dictionary=dictionary, events=events)
        except (RedcapFormatError, MappingError) as exc:
            raise DeliveryError(f"site {site.site_id}: REDCap export {records_name}: {exc}",
                                file_name=records_name, rule="redcap_export") from exc
    output.files = {n: members[n] for n in filter(None, (records_name, dictionary_name, events_name))}
    output.extracted_at = output.extracted_at or canonical.extract_date(delivery.extract_id)
    return output

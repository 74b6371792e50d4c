"""Writing exchange-format data as a realistic REDCap longitudinal export (for demo sites).

The demo generator produces exchange-format truth; a REDCap demo site must
deliver it the way a real REDCap site would: a raw records CSV with events,
repeating instruments, checkbox columns, coded choices and ``*_complete``
columns, its data dictionary (UI download header) and an events export. The
same mapping the reader uses drives the writer, so
``to_exchange(write_redcap_export(tables, m).records, m)`` gives the tables back.

Limits of the inverse (both documented in the mapping example):

* A checkbox cannot hold "unknown" for one option: when some options of a
  checkbox are known and others are empty, the empty ones are written as
  unchecked and read back as ``false``.
* Follow-ups go to the event of their nominal window by days after the
  procedure; a second follow-up in a window, or one outside every window,
  goes to the repeating ``unscheduled_event``.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from poem_registry.adapters.redcap import (
    EVENT_COLUMN,
    REPEAT_INSTANCE_COLUMN,
    REPEAT_INSTRUMENT_COLUMN,
    checkbox_column,
)
from poem_registry.adapters.redcap_poem import (
    ENTITIES,
    EntityMapping,
    MappingError,
    PoemRedcapMapping,
    exchange_column_types,
    exchange_columns,
)

__all__ = ["DEMO_REDCAP_MAPPING", "RedcapExportFiles", "demo_mapping_yaml", "write_redcap_export"]


def _codes(*names: str, start: int = 1) -> dict[str, str]:
    return {str(i): name for i, name in enumerate(names, start=start)}


# The REDCap project behind the demo REDCap site: field names, codes and events
# as a site would design them, not as the exchange format names them.
DEMO_REDCAP_MAPPING: dict = {
    "record_id_field": "record_id",
    "procedures": {
        "form": "poem_procedure",
        "events": ["baseline_arm_1"],
        "fields": {
            "record_id": "procedure_id",
            "mrn": "patient_id",
            "operator": "operator_id",
            "proc_date": "procedure_date",
            "proc_type": "procedure_type",
            "sex": "sex",
            "birth_year": "birth_year",
            "age": "age_at_procedure",
            "dx": "diagnosis",
            "cc_version": "cc_version",
            "morphology": "esophageal_morphology",
            "hiatal_hernia": "hiatal_hernia",
            "chagas": "chagas",
            "prior_pd": "prior_pneumatic_dilation",
            "prior_botox": "prior_botulinum",
            "prior_heller": "prior_heller",
            "prior_poem": "prior_poem",
            "bl_eckardt_date": "baseline_eckardt_date",
            "bl_eck_dysphagia": "baseline_eckardt_dysphagia",
            "bl_eck_regurg": "baseline_eckardt_regurgitation",
            "bl_eck_chestpain": "baseline_eckardt_chest_pain",
            "bl_eck_weightloss": "baseline_eckardt_weight_loss",
            "bl_irp": "baseline_irp_mmhg",
            "bl_les": "baseline_les_pressure_mmhg",
            "bl_tbe5": "baseline_tbe_5min_cm",
            "approach": "approach",
            "myotomy_depth": "myotomy_depth",
            "tunnel_len": "tunnel_length_cm",
            "myo_eso_len": "myotomy_esophageal_length_cm",
            "myo_gastric_len": "myotomy_gastric_length_cm",
            "proc_minutes": "procedure_minutes",
            "tech_success": "technical_success",
            "aborted_reason": "aborted_reason",
            "fundoplication": "fundoplication",
            "mucosotomy": "mucosotomy_intraop",
            "planned_los": "planned_los_nights",
            "discharge_date": "discharge_date",
            "proc_updated_at": "record_updated_at",
        },
        "codes": {
            "proc_type": _codes("poem", "poem_f", "redo_poem", "g_poem", "z_poem", "d_poem"),
            "sex": {"1": "female", "2": "male", "3": "other", "99": "unknown"},
            "dx": _codes(
                "achalasia_type_1",
                "achalasia_type_2",
                "achalasia_type_3",
                "achalasia_unsubtyped",
                "egjoo",
                "distal_esophageal_spasm",
                "hypercontractile_esophagus",
                "absent_contractility",
                "other",
            ),
            "cc_version": {"1": "v4", "2": "v3", "3": "v2", "4": "conventional", "0": "none"},
            "morphology": {"1": "straight", "2": "sigmoid", "3": "advanced_sigmoid", "99": "unknown"},
            "hiatal_hernia": {"0": "none", "1": "small_lt2cm", "2": "ge2cm", "99": "unknown"},
            "approach": _codes("anterior", "posterior", "other"),
            "myotomy_depth": _codes("circular_selective", "full_thickness", "progressive_full_thickness"),
            "aborted_reason": _codes("fibrosis", "ae", "anatomy", "equipment", "other"),
        },
        "booleans": ["chagas", "prior_heller", "prior_poem", "tech_success", "fundoplication", "mucosotomy"],
        "checkboxes": {
            "insufflation": {
                "1": "capnoperitoneum",
                "2": "capnothorax",
                "3": "subcutaneous_emphysema",
                "4": "needle_decompression",
            }
        },
    },
    "followups": {
        "form": "followup",
        "events": [
            "month_3_arm_1",
            "month_12_arm_1",
            "month_24_arm_1",
            "month_36_arm_1",
            "month_60_arm_1",
            "unscheduled_arm_1",
        ],
        "windows": {
            "month_3_arm_1": [60, 240],
            "month_12_arm_1": [241, 540],
            "month_24_arm_1": [541, 900],
            "month_36_arm_1": [901, 1260],
            "month_60_arm_1": [1620, 2100],
        },
        "unscheduled_event": "unscheduled_arm_1",
        "fields": {
            "fu_assessment_id": "assessment_id",
            "fu_date": "assessment_date",
            "fu_mode": "mode",
            "eck_dysphagia": "eckardt_dysphagia",
            "eck_regurg": "eckardt_regurgitation",
            "eck_chestpain": "eckardt_chest_pain",
            "eck_weightloss": "eckardt_weight_loss",
            "eck_total": "eckardt_total",
            "ppi": "ppi_use",
            "gerdq": "gerdq_score",
            "la_grade": "la_grade",
            "aet": "aet_percent",
            "ph_on_ppi": "ph_on_ppi",
            "fu_irp": "irp_mmhg",
            "fu_les": "les_pressure_mmhg",
            "fu_tbe5": "tbe_5min_cm",
            "fu_updated_at": "record_updated_at",
        },
        "codes": {
            "fu_mode": _codes("in_person", "telephone", "questionnaire", "chart_abstraction"),
            "la_grade": {"0": "none", "1": "A", "2": "B", "3": "C", "4": "D"},
        },
        "booleans": ["ppi", "ph_on_ppi"],
    },
    "adverse_events": {
        "form": "adverse_event",
        "fields": {
            "ae_event_id": "event_id",
            "ae_type": "ae_type",
            "ae_onset": "onset_date",
            "ae_unplanned_nights": "unplanned_nights",
            "ae_icu_nights": "icu_nights",
            "ae_transfusion": "transfusion",
            "ae_repeat_egd": "repeat_endoscopy",
            "ae_ir": "interventional_radiology",
            "ae_surgery": "surgery",
            "ae_disability": "permanent_disability",
            "ae_death": "death",
            "ae_aborted": "procedure_aborted",
            "ae_airway": "unplanned_airway_support",
            "ae_consult": "post_procedure_consultation",
            "ae_severity": "severity_reported",
            "ae_updated_at": "record_updated_at",
        },
        "codes": {
            "ae_type": _codes(
                "bleeding_intraop",
                "bleeding_delayed",
                "leak_mucosal",
                "perforation_delayed",
                "capnoperitoneum",
                "capnothorax",
                "subcutaneous_emphysema",
                "mucosotomy_intraop",
                "pneumonia_aspiration",
                "empyema_mediastinitis",
                "pleural_effusion_hemothorax",
                "pain_requiring_admission",
                "cardiopulmonary",
                "death",
                "other",
            ),
            "ae_severity": _codes("incident", "mild", "moderate", "severe", "fatal"),
        },
        "booleans": [
            "ae_transfusion",
            "ae_repeat_egd",
            "ae_ir",
            "ae_surgery",
            "ae_disability",
            "ae_death",
            "ae_aborted",
            "ae_airway",
            "ae_consult",
        ],
    },
    "reinterventions": {
        "form": "reintervention",
        "fields": {
            "reint_event_id": "event_id",
            "reint_date": "reintervention_date",
            "reint_type": "reintervention_type",
            "reint_indication": "indication",
            "reint_updated_at": "record_updated_at",
        },
        "codes": {
            "reint_type": _codes(
                "pneumatic_dilation",
                "botulinum",
                "heller_myotomy",
                "redo_poem",
                "esophagectomy",
                "stent",
                "other",
            ),
            "reint_indication": _codes("persistent_symptoms", "recurrence", "gerd", "adverse_event", "other"),
        },
    },
}

_VALIDATION_OF_TYPE = {"date": "date_ymd", "int": "integer", "decimal": "number"}
_UI_HEADER = [
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
]
_IDENTIFIER_COLUMNS = {"patient_id", "operator_id"}


@dataclass(frozen=True)
class RedcapExportFiles:
    """Paths of one written export."""

    records: Path
    dictionary: Path
    events: Path
    form_event_mapping: Path


def demo_mapping_yaml() -> str:
    """The demo mapping as the ``redcap:`` block of a site file."""
    return yaml.safe_dump({"redcap": DEMO_REDCAP_MAPPING}, sort_keys=False, allow_unicode=True)


def _event_label(unique_name: str) -> str:
    base = unique_name.rsplit("_arm_", 1)[0]
    return base.replace("_", " ").capitalize()


def _dictionary_rows(mapping: PoemRedcapMapping) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    rid = mapping.record_id_field or "record_id"
    for entity in ENTITIES:
        em = mapping.entities.get(entity)
        if em is None:
            continue
        types = exchange_column_types(entity)
        by_column = {column: name for name, column in em.fields.items()}
        checkbox_of_column = {c: name for name, options in em.checkboxes.items() for c in options.values()}
        written: set[str] = set()
        for column in exchange_columns(entity):
            name = by_column.get(column) or checkbox_of_column.get(column)
            if name is None or name in written:
                continue
            written.add(name)
            row = dict.fromkeys(_UI_HEADER, "")
            row.update(
                {"Variable / Field Name": name, "Form Name": em.form, "Field Label": column.replace("_", " ")}
            )
            if name in em.checkboxes:
                row["Field Type"] = "checkbox"
                row["Field Label"] = name.replace("_", " ")
                choices = em.checkboxes[name]
                row["Choices, Calculations, OR Slider Labels"] = " | ".join(
                    f"{c}, {v}" for c, v in choices.items()
                )
            elif name in em.codes:
                row["Field Type"] = "dropdown" if len(em.codes[name]) > 5 else "radio"
                choices = em.codes[name]
                row["Choices, Calculations, OR Slider Labels"] = " | ".join(
                    f"{c}, {v}" for c, v in choices.items()
                )
            elif name in em.booleans:
                row["Field Type"] = "yesno"
            else:
                row["Field Type"] = "text"
                row["Text Validation Type OR Show Slider Number"] = _VALIDATION_OF_TYPE.get(types[column], "")
            if column in _IDENTIFIER_COLUMNS or name == rid:
                row["Identifier?"] = "y" if column in _IDENTIFIER_COLUMNS else ""
            if column in ("assessment_id", "event_id") or column == "record_updated_at":
                row["Field Annotation"] = "@HIDDEN @READONLY"
            rows.append(row)
    # REDCap requires the record id first.
    rows.sort(key=lambda r: r["Variable / Field Name"] != rid)
    return rows


def _invert(em: EntityMapping, record: Mapping[str, str], entity: str) -> dict[str, str]:
    """Exchange row -> REDCap cells of one form."""
    cells: dict[str, str] = {}
    for name, column in em.fields.items():
        value = record.get(column, "")
        if name in em.codes:
            inverse = {v: k for k, v in em.codes[name].items()}
            value = inverse.get(value, value)  # unknown codes pass through, as the reader does
        elif name in em.booleans:
            value = {"true": "1", "false": "0"}.get(value, value)
        cells[name] = value
    for name, options in em.checkboxes.items():
        values = {code: record.get(column, "") for code, column in options.items()}
        if all(v == "" for v in values.values()):
            cells.update({checkbox_column(name, code): "" for code in options})
            continue
        for code, value in values.items():
            if value not in ("true", "false", ""):
                raise ValueError(
                    f"{entity}: {options[code]} is {value!r}; a REDCap checkbox can only hold true or false"
                )
            cells[checkbox_column(name, code)] = "1" if value == "true" else "0"
    return cells


def _text_frame(frame: pd.DataFrame | None, entity: str, em: EntityMapping) -> list[dict[str, str]]:
    if frame is None:
        return []
    mapped = set(em.exchange_targets) | {"procedure_id"}
    extra = [c for c in frame.columns if not c.startswith("_") and c not in mapped]
    if extra:
        raise MappingError(f"{entity}: column(s) {extra} have no REDCap field in the mapping")
    return frame.astype(object).where(frame.notna(), "").astype(str).to_dict("records")


def _days_between(start: str, end: str) -> int | None:
    try:
        return (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days
    except ValueError:
        return None


def write_redcap_export(
    tables: Mapping[str, pd.DataFrame],
    mapping: Mapping[str, object] | PoemRedcapMapping,
    out_dir: str | Path,
    *,
    project: str = "POEMRegistry",
    export_date: str = "2026-01-01_1200",
) -> RedcapExportFiles:
    """Write ``tables`` (exchange-format frames, values as strings) as a REDCap export into ``out_dir``.

    File names follow the Data Export Tool (``<project>_DATA_<date>.csv``,
    ``<project>_DataDictionary_<date>.csv``) so a demo delivery looks like a real one.
    """
    m = mapping if isinstance(mapping, PoemRedcapMapping) else PoemRedcapMapping.from_dict(mapping)
    if not m.longitudinal:
        raise MappingError("the writer produces a longitudinal project: procedures.events must name an event")
    rid = m.record_id_field or "record_id"
    proc = m.entities["procedures"]
    if proc.fields.get(rid) != "procedure_id":
        raise MappingError(
            f"the writer needs procedures.fields.{rid}: procedure_id (one record per procedure)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dictionary_rows = _dictionary_rows(m)
    forms = list(dict.fromkeys(r["Form Name"] for r in dictionary_rows))
    form_columns: dict[str, list[str]] = {}
    for row in dictionary_rows:
        name = row["Variable / Field Name"]
        form = row["Form Name"]
        if row["Field Type"] == "checkbox":
            codes = [
                c.split(",", 1)[0].strip() for c in row["Choices, Calculations, OR Slider Labels"].split("|")
            ]
            form_columns.setdefault(form, []).extend(checkbox_column(name, c) for c in codes)
        elif name != rid:
            form_columns.setdefault(form, []).append(name)
    header = [rid, EVENT_COLUMN, REPEAT_INSTRUMENT_COLUMN, REPEAT_INSTANCE_COLUMN]
    for form in forms:
        header += [*form_columns.get(form, []), f"{form}_complete"]

    rows: list[dict[str, str]] = []

    def add(
        record: str, event: str, instrument: str, instance: str, form: str, cells: dict[str, str]
    ) -> None:
        row = dict.fromkeys(header, "")
        row.update({rid: record, EVENT_COLUMN: event, REPEAT_INSTRUMENT_COLUMN: instrument})
        row[REPEAT_INSTANCE_COLUMN] = instance
        row.update({k: v for k, v in cells.items() if k != rid})
        row[f"{form}_complete"] = "2"
        rows.append(row)

    procedure_dates: dict[str, str] = {}
    for record in _text_frame(tables.get("procedures"), "procedures", proc):
        procedure_dates[record["procedure_id"]] = record.get("procedure_date", "")
        add(record["procedure_id"], proc.events[0], "", "", proc.form, _invert(proc, record, "procedures"))

    fu = m.entities.get("followups")
    if fu is not None:
        used: set[tuple[str, str]] = set()
        unscheduled: dict[str, int] = {}
        for record in _text_frame(tables.get("followups"), "followups", fu):
            pid = record["procedure_id"]
            days = _days_between(procedure_dates.get(pid, ""), record.get("assessment_date", ""))
            event = next(
                (
                    e
                    for e, (lo, hi) in fu.windows.items()
                    if days is not None and lo <= days <= hi and (pid, e) not in used
                ),
                None,
            )
            instance = ""
            if event is None:
                if fu.unscheduled_event is None:
                    raise MappingError(
                        "followups.unscheduled_event is needed for follow-ups outside every window"
                    )
                event = fu.unscheduled_event
                unscheduled[pid] = unscheduled.get(pid, 0) + 1
                instance = str(unscheduled[pid])
            used.add((pid, event))
            add(pid, event, "", instance, fu.form, _invert(fu, record, "followups"))

    for entity in ("adverse_events", "reinterventions"):
        em = m.entities.get(entity)
        if em is None:
            continue
        counters: dict[str, int] = {}
        for record in _text_frame(tables.get(entity), entity, em):
            pid = record["procedure_id"]
            counters[pid] = counters.get(pid, 0) + 1
            add(pid, proc.events[0], em.form, str(counters[pid]), em.form, _invert(em, record, entity))

    event_order = {e: i for i, e in enumerate([*proc.events, *(fu.events if fu else ())])}
    rows.sort(
        key=lambda r: (
            r[rid],
            event_order.get(r[EVENT_COLUMN], len(event_order)),
            r[REPEAT_INSTRUMENT_COLUMN],
            int(r[REPEAT_INSTANCE_COLUMN] or 0),
        )
    )
    records_path = out_dir / f"{project}_DATA_{export_date}.csv"
    _write_csv(records_path, header, [[r[c] for c in header] for r in rows])
    dictionary_path = out_dir / f"{project}_DataDictionary_{export_date[:10]}.csv"
    _write_csv(dictionary_path, _UI_HEADER, [[r[c] for c in _UI_HEADER] for r in dictionary_rows])
    events = [*proc.events, *(e for e in (fu.events if fu else ()) if e not in proc.events)]
    events_path = out_dir / f"{project}_events.csv"
    _write_csv(
        events_path,
        ["event_name", "arm_num", "unique_event_name", "custom_event_label"],
        [[_event_label(e), e.rsplit("_arm_", 1)[-1], e, ""] for e in events],
    )
    mapping_path = out_dir / f"{project}_InstrumentDesignations.csv"
    designations = [[e, proc.form] for e in proc.events]
    designations += [
        [proc.events[0], m.entities[e].form] for e in ("adverse_events", "reinterventions") if e in m.entities
    ]
    if fu is not None:
        designations += [[e, fu.form] for e in fu.events]
    _write_csv(
        mapping_path,
        ["arm_num", "unique_event_name", "form"],
        [[e.rsplit("_arm_", 1)[-1], e, form] for e, form in designations],
    )
    return RedcapExportFiles(records_path, dictionary_path, events_path, mapping_path)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

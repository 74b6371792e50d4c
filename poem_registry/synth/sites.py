"""The demo sites and the generic sites used for benchmark-sized runs.

A :class:`SiteSpec` holds what the generator needs to know about a site (tier,
volume, delivery habits, local clinical practice). :func:`site_yaml` turns it
into the site configuration file described in ``docs/site-config.md``; the
committed ``sites/<site_id>.yml`` files of the demo are produced by it, and the
writers apply the mapping of the YAML actually found in the sites directory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Index POEMs per year at scale 1, by tier (clinical-spec §10.6).
TIER_VOLUME = {"small": 18.0, "medium": 45.0, "large": 200.0}
TIER_OPERATORS = {"small": 2, "medium": 3, "large": 6}


@dataclass(frozen=True)
class SiteSpec:
    site_id: str
    name: str
    tier: str  # small | medium | large
    country: str
    adapter: str  # canonical | csv_layout | xlsx | redcap | sql
    annual_volume: float  # index POEMs per year at scale 1
    n_operators: int
    cadence: str = "monthly"  # monthly | quarterly
    delivery: str = "incremental"  # incremental | cumulative
    extract_ids: str = "date"  # date (2025-03-31) | seq (ext_007)
    manifest: bool = True  # canonical only
    zipped: bool = False  # canonical only
    active_years: float | None = None  # None: the whole window; a starting site began recently
    growth: float = 0.15  # volume ramp over the window (0 = flat)
    new_program: bool = False  # all own operators start without POEM experience
    chagas_rate: float = 0.0
    poem_f_rate: float = 0.0  # share of POEMs with fundoplication (after 2019)
    anterior_rate: float = 0.5
    full_thickness_rate: float = 0.4
    male_rate: float = 0.5
    ph_rate: float = 0.45  # share of 3-12 month assessments with a pH study
    egd_rate: float = 0.5  # share of 3-12 month assessments with an EGD
    planned_los: tuple[float, float, float, float] = (0.05, 0.25, 0.45, 0.25)  # P(0,1,2,3 nights)
    late_entry_rate: float = 0.0  # procedures keyed in months late (follow-ups arrive first)
    incident_rows: bool = False  # site also sends insufflation/mucosotomy incidents as AE rows
    withdrawals: int = 0
    age_fields: str = "both"  # both | birth_year | age
    cc_v3_rate: float = 0.1
    unsubtyped_rate: float = 0.0  # achalasia without HRM subtype (conventional manometry)
    expected_cadence_days: int = 31


DEMO_SITES: tuple[SiteSpec, ...] = (
    SiteSpec(
        site_id="riverside",
        name="Riverside University Hospital",
        tier="large",
        country="US",
        adapter="canonical",
        annual_volume=240,
        n_operators=5,
        cadence="monthly",
        delivery="incremental",
        extract_ids="seq",
        manifest=True,
        poem_f_rate=0.10,
        anterior_rate=0.8,
        planned_los=(0.05, 0.3, 0.45, 0.2),
        late_entry_rate=0.03,
        incident_rows=True,
        withdrawals=3,
    ),
    SiteSpec(
        site_id="northbay",
        name="Northbay Regional Health Centre",
        tier="medium",
        country="CA",
        adapter="csv_layout",
        annual_volume=60,
        n_operators=3,
        cadence="quarterly",
        delivery="cumulative",
        male_rate=0.54,
        egd_rate=0.6,
        age_fields="birth_year",
        expected_cadence_days=92,
    ),
    SiteSpec(
        site_id="lakeshore",
        name="Lakeshore Medical Center",
        tier="medium",
        country="US",
        adapter="xlsx",
        annual_volume=50,
        n_operators=3,
        cadence="quarterly",
        delivery="incremental",
        anterior_rate=0.2,
        full_thickness_rate=0.55,
        ph_rate=0.6,
        expected_cadence_days=92,
    ),
    SiteSpec(
        site_id="summit",
        name="Sanatorio La Cumbre",
        tier="small",
        country="AR",
        adapter="redcap",
        annual_volume=22,
        n_operators=2,
        cadence="quarterly",
        expected_cadence_days=92,
        delivery="cumulative",
        chagas_rate=0.30,
        male_rate=0.52,
        ph_rate=0.3,
        egd_rate=0.7,
        planned_los=(0.0, 0.1, 0.5, 0.4),
        unsubtyped_rate=0.08,
        cc_v3_rate=0.25,
    ),
    SiteSpec(
        site_id="valley",
        name="Valley Community Hospital",
        tier="small",
        country="US",
        adapter="sql",
        annual_volume=18,
        n_operators=1,
        cadence="monthly",
        delivery="cumulative",
        age_fields="age",
        planned_los=(0.15, 0.45, 0.3, 0.1),
    ),
    SiteSpec(
        site_id="harbor",
        name="Harbor City Medical Center",
        tier="small",
        country="US",
        adapter="canonical",
        annual_volume=20,
        n_operators=1,
        cadence="monthly",
        delivery="incremental",
        extract_ids="date",
        manifest=False,
        zipped=True,
        active_years=1.5,
        growth=0.6,
        new_program=True,
    ),
)

#: Operators working at two sites under the same provider number:
#: (site a, site b, kind). "trainee" starts without experience at site a a
#: quarter into the window and later also leads the new program at site b, so
#: the learning curve crosses sites; "experienced" works at both all along.
SHARED_OPERATORS: tuple[tuple[str, str, str], ...] = (
    ("riverside", "harbor", "trainee"),
    ("northbay", "lakeshore", "experienced"),
)

_GENERIC_TIERS = ("medium", "small", "large", "small", "medium", "small", "medium", "small")


def site_specs(n_sites: int) -> list[SiteSpec]:
    """The first ``n_sites`` demo sites, then generic canonical sites (``site_007`` ...)."""
    specs = list(DEMO_SITES[:n_sites])
    for k in range(len(specs), n_sites):
        tier = _GENERIC_TIERS[k % len(_GENERIC_TIERS)]
        sid = f"site_{k + 1:03d}"
        specs.append(
            SiteSpec(
                site_id=sid,
                name=f"Synthetic Hospital {k + 1:03d}",
                tier=tier,
                country="US",
                adapter="canonical",
                annual_volume=TIER_VOLUME[tier],
                n_operators=TIER_OPERATORS[tier],
                cadence="quarterly",
                delivery="incremental",
                extract_ids="date",
                manifest=True,
                anterior_rate=(0.2, 0.5, 0.8)[k % 3],
                expected_cadence_days=92,
            )
        )
    return specs


def shared_operator_pairs(specs: list[SiteSpec]) -> list[tuple[str, str, str]]:
    ids = {s.site_id for s in specs}
    pairs = [p for p in SHARED_OPERATORS if p[0] in ids and p[1] in ids]
    # generic sites: every tenth shares an experienced operator with its predecessor
    for k, s in enumerate(specs):
        if k >= len(DEMO_SITES) and (k + 1) % 10 == 0:
            pairs.append((specs[k - 1].site_id, s.site_id, "experienced"))
    return pairs


def with_overrides(spec: SiteSpec, **kw) -> SiteSpec:
    return replace(spec, **kw)


# --------------------------------------------------------------------------------------
# Site configuration files (docs/site-config.md)
# --------------------------------------------------------------------------------------

NORTHBAY_MAPPING = {
    "files": {
        "procedures": "poem_cases_*.csv",
        "followups": "poem_followup_*.csv",
        "adverse_events": "poem_complications_*.csv",
        "reinterventions": "poem_retreatment_*.csv",
    },
    "delimiter": ";",
    "encoding": "cp1252",
    "date_format": "%m/%d/%Y",
    "timestamp_format": "%m/%d/%Y %H:%M",
    "decimal": ",",
    "booleans": {"true": ["Y", "Yes", "1"], "false": ["N", "No", "0"]},
    "columns": {
        "procedures": {
            "Case No": "procedure_id",
            "MRN": "patient_id",
            "Operator NPI": "operator_id",
            "Procedure Date": "procedure_date",
            "Procedure": "procedure_type",
            "Sex": "sex",
            "Year of Birth": "birth_year",
            "Diagnosis": "diagnosis",
            "Chicago Version": "cc_version",
            "Morphology": "esophageal_morphology",
            "Hiatal Hernia": "hiatal_hernia",
            "Chagas": "chagas",
            "Prior PD (n)": "prior_pneumatic_dilation",
            "Prior Botox (n)": "prior_botulinum",
            "Prior Heller": "prior_heller",
            "Prior POEM": "prior_poem",
            "Baseline Eckardt Date": "baseline_eckardt_date",
            "Baseline Dysphagia": "baseline_eckardt_dysphagia",
            "Baseline Regurgitation": "baseline_eckardt_regurgitation",
            "Baseline Chest Pain": "baseline_eckardt_chest_pain",
            "Baseline Weight Loss": "baseline_eckardt_weight_loss",
            "Baseline IRP": "baseline_irp_mmhg",
            "Baseline LES": "baseline_les_pressure_mmhg",
            "Baseline TBE 5min": "baseline_tbe_5min_cm",
            "Orientation": "approach",
            "Myotomy Depth": "myotomy_depth",
            "Tunnel Length (mm)": "tunnel_length_cm",
            "Esophageal Myotomy (cm)": "myotomy_esophageal_length_cm",
            "Gastric Myotomy (cm)": "myotomy_gastric_length_cm",
            "Duration (min)": "procedure_minutes",
            "Technical Success": "technical_success",
            "Abort Reason": "aborted_reason",
            "Fundoplication": "fundoplication",
            "Mucosotomy": "mucosotomy_intraop",
            "Capnoperitoneum": "capnoperitoneum",
            "Needle Decompression": "needle_decompression",
            "Capnothorax": "capnothorax",
            "SC Emphysema": "subcutaneous_emphysema",
            "Planned LOS": "planned_los_nights",
            "Discharge Date": "discharge_date",
            "Last Modified": "record_updated_at",
        },
        "followups": {
            "Visit ID": "assessment_id",
            "Case No": "procedure_id",
            "Visit Date": "assessment_date",
            "Contact": "mode",
            "Dysphagia": "eckardt_dysphagia",
            "Regurgitation": "eckardt_regurgitation",
            "Chest Pain": "eckardt_chest_pain",
            "Weight Loss": "eckardt_weight_loss",
            "Eckardt Total": "eckardt_total",
            "On PPI": "ppi_use",
            "GerdQ": "gerdq_score",
            "LA Grade": "la_grade",
            "AET %": "aet_percent",
            "pH Study On PPI": "ph_on_ppi",
            "IRP": "irp_mmhg",
            "LES Pressure": "les_pressure_mmhg",
            "TBE 5min": "tbe_5min_cm",
            "Last Modified": "record_updated_at",
        },
        "adverse_events": {
            "Complication ID": "event_id",
            "Case No": "procedure_id",
            "Complication": "ae_type",
            "Onset Date": "onset_date",
            "Extra Nights": "unplanned_nights",
            "ICU Nights": "icu_nights",
            "Transfusion": "transfusion",
            "Repeat Endoscopy": "repeat_endoscopy",
            "IR / Drain": "interventional_radiology",
            "Surgery": "surgery",
            "Permanent Disability": "permanent_disability",
            "Death": "death",
            "Procedure Aborted": "procedure_aborted",
            "Airway Support": "unplanned_airway_support",
            "Consultation": "post_procedure_consultation",
            "Site Grade": "severity_reported",
            "Last Modified": "record_updated_at",
        },
        "reinterventions": {
            "Retreatment ID": "event_id",
            "Case No": "procedure_id",
            "Retreatment Date": "reintervention_date",
            "Retreatment": "reintervention_type",
            "Reason": "indication",
            "Last Modified": "record_updated_at",
        },
    },
    "codes": {
        "procedure_type": {
            "POEM": "poem",
            "POEM+F": "poem_f",
            "Redo POEM": "redo_poem",
            "G-POEM": "g_poem",
            "Z-POEM": "z_poem",
        },
        "sex": {"F": "female", "M": "male", "X": "other", "U": "unknown"},
        "diagnosis": {
            "Type I": "achalasia_type_1",
            "classic achalasia": "achalasia_type_1",
            "Type II": "achalasia_type_2",
            "Type III": "achalasia_type_3",
            "spastic achalasia": "achalasia_type_3",
            "Achalasia NOS": "achalasia_unsubtyped",
            "EGJOO": "egjoo",
            "DES": "distal_esophageal_spasm",
            "Jackhammer": "hypercontractile_esophagus",
            "Absent contractility": "absent_contractility",
            "Other": "other",
        },
        "mode": {
            "En personne": "in_person",
            "Téléphone": "telephone",
            "Questionnaire": "questionnaire",
            "Dossier": "chart_abstraction",
        },
        "approach": {"Anterior": "anterior", "Posterior": "posterior", "Other": "other"},
    },
    "units": {"procedures": {"tunnel_length_cm": 0.1}},
}

LAKESHORE_MAPPING = {
    "workbook": "lakeshore_poem_*.xlsx",
    "sheets": {
        "procedures": "Procedures",
        "followups": "Follow-up",
        "adverse_events": "Complications",
        "reinterventions": "Retreatments",
    },
    "booleans": {"true": ["Yes"], "false": ["No"]},
    "columns": {
        "procedures": {
            "Procedure ID": "procedure_id",
            "Patient MRN": "patient_id",
            "Endoscopist": "operator_id",
            "Date of Procedure": "procedure_date",
            "Procedure Type": "procedure_type",
            "Gender": "sex",
            "Birth Year": "birth_year",
            "Age": "age_at_procedure",
            "HRM Diagnosis": "diagnosis",
            "CC Version": "cc_version",
            "Esophageal Shape": "esophageal_morphology",
            "Hiatal Hernia": "hiatal_hernia",
            "Chagas Disease": "chagas",
            "Prior Dilations": "prior_pneumatic_dilation",
            "Prior Botox": "prior_botulinum",
            "Prior Heller": "prior_heller",
            "Prior POEM": "prior_poem",
            "Eckardt Date (pre)": "baseline_eckardt_date",
            "Dysphagia (pre)": "baseline_eckardt_dysphagia",
            "Regurgitation (pre)": "baseline_eckardt_regurgitation",
            "Chest Pain (pre)": "baseline_eckardt_chest_pain",
            "Weight Loss (pre)": "baseline_eckardt_weight_loss",
            "IRP (pre)": "baseline_irp_mmhg",
            "LES (pre)": "baseline_les_pressure_mmhg",
            "TBE 5 min (pre)": "baseline_tbe_5min_cm",
            "Myotomy Orientation": "approach",
            "Myotomy Depth": "myotomy_depth",
            "Tunnel cm": "tunnel_length_cm",
            "Esophageal Myotomy cm": "myotomy_esophageal_length_cm",
            "Gastric Myotomy cm": "myotomy_gastric_length_cm",
            "Procedure Minutes": "procedure_minutes",
            "Technically Successful": "technical_success",
            "Reason Aborted": "aborted_reason",
            "Fundoplication": "fundoplication",
            "Mucosotomy": "mucosotomy_intraop",
            "Capnoperitoneum": "capnoperitoneum",
            "Veress Needle": "needle_decompression",
            "Capnothorax": "capnothorax",
            "Subcutaneous Emphysema": "subcutaneous_emphysema",
            "Planned Nights": "planned_los_nights",
            "Discharge Date": "discharge_date",
            "Updated": "record_updated_at",
        },
        "followups": {
            "Assessment ID": "assessment_id",
            "Procedure ID": "procedure_id",
            "Assessment Date": "assessment_date",
            "Mode": "mode",
            "Dysphagia": "eckardt_dysphagia",
            "Regurgitation": "eckardt_regurgitation",
            "Chest Pain": "eckardt_chest_pain",
            "Weight Loss": "eckardt_weight_loss",
            "Eckardt": "eckardt_total",
            "PPI": "ppi_use",
            "GerdQ": "gerdq_score",
            "LA Grade": "la_grade",
            "AET (%)": "aet_percent",
            "pH on PPI": "ph_on_ppi",
            "IRP": "irp_mmhg",
            "LES": "les_pressure_mmhg",
            "TBE 5 min": "tbe_5min_cm",
            "Updated": "record_updated_at",
        },
        "adverse_events": {
            "Event ID": "event_id",
            "Procedure ID": "procedure_id",
            "Event Type": "ae_type",
            "Onset": "onset_date",
            "Unplanned Nights": "unplanned_nights",
            "ICU Nights": "icu_nights",
            "Transfusion": "transfusion",
            "Repeat Endoscopy": "repeat_endoscopy",
            "IR": "interventional_radiology",
            "Surgery": "surgery",
            "Disability": "permanent_disability",
            "Death": "death",
            "Aborted": "procedure_aborted",
            "Airway Support": "unplanned_airway_support",
            "Consult": "post_procedure_consultation",
            "Severity (site)": "severity_reported",
            "Updated": "record_updated_at",
        },
        "reinterventions": {
            "Event ID": "event_id",
            "Procedure ID": "procedure_id",
            "Date": "reintervention_date",
            "Treatment": "reintervention_type",
            "Indication": "indication",
            "Updated": "record_updated_at",
        },
    },
    "codes": {
        "sex": {"Female": "female", "Male": "male", "Other": "other", "Unknown": "unknown"},
        "diagnosis": {
            "Achalasia type I": "achalasia_type_1",
            "Achalasia type II": "achalasia_type_2",
            "Achalasia type III": "achalasia_type_3",
            "Achalasia (unsubtyped)": "achalasia_unsubtyped",
            "EGJOO": "egjoo",
            "Distal esophageal spasm": "distal_esophageal_spasm",
            "Hypercontractile esophagus": "hypercontractile_esophagus",
            "Absent contractility": "absent_contractility",
            "Other": "other",
        },
    },
}

VALLEY_TABLES = {
    "procedures": {
        "table": "poem_procedure",
        "columns": {
            "case_id": "procedure_id",
            "mrn": "patient_id",
            "surgeon_npi": "operator_id",
            "case_date": "procedure_date",
            "case_type": "procedure_type",
            "sex": "sex",
            "age_years": "age_at_procedure",
            "dx_code": "diagnosis",
            "cc_version": "cc_version",
            "morphology": "esophageal_morphology",
            "hiatal_hernia": "hiatal_hernia",
            "chagas_flag": "chagas",
            "prior_pd_count": "prior_pneumatic_dilation",
            "prior_botox_count": "prior_botulinum",
            "prior_heller_flag": "prior_heller",
            "prior_poem_flag": "prior_poem",
            "pre_eckardt_date": "baseline_eckardt_date",
            "pre_dysphagia": "baseline_eckardt_dysphagia",
            "pre_regurgitation": "baseline_eckardt_regurgitation",
            "pre_chest_pain": "baseline_eckardt_chest_pain",
            "pre_weight_loss": "baseline_eckardt_weight_loss",
            "pre_irp": "baseline_irp_mmhg",
            "pre_les": "baseline_les_pressure_mmhg",
            "pre_tbe_5": "baseline_tbe_5min_cm",
            "orientation": "approach",
            "depth": "myotomy_depth",
            "tunnel_cm": "tunnel_length_cm",
            "myotomy_eso_cm": "myotomy_esophageal_length_cm",
            "myotomy_gastric_cm": "myotomy_gastric_length_cm",
            "duration_min": "procedure_minutes",
            "tech_success_flag": "technical_success",
            "abort_reason": "aborted_reason",
            "fundoplication_flag": "fundoplication",
            "mucosotomy_flag": "mucosotomy_intraop",
            "capnoperitoneum_flag": "capnoperitoneum",
            "veress_flag": "needle_decompression",
            "capnothorax_flag": "capnothorax",
            "sc_emphysema_flag": "subcutaneous_emphysema",
            "planned_los": "planned_los_nights",
            "discharge_date": "discharge_date",
            "record_updated_at": "record_updated_at",
        },
    },
    "followups": {
        "table": "poem_followup",
        "columns": {
            "visit_id": "assessment_id",
            "case_id": "procedure_id",
            "visit_date": "assessment_date",
            "visit_mode": "mode",
            "dysphagia": "eckardt_dysphagia",
            "regurgitation": "eckardt_regurgitation",
            "chest_pain": "eckardt_chest_pain",
            "weight_loss": "eckardt_weight_loss",
            "eckardt_total": "eckardt_total",
            "ppi_flag": "ppi_use",
            "gerdq": "gerdq_score",
            "la_grade": "la_grade",
            "aet_pct": "aet_percent",
            "ph_on_ppi_flag": "ph_on_ppi",
            "irp": "irp_mmhg",
            "les": "les_pressure_mmhg",
            "tbe_5": "tbe_5min_cm",
            "record_updated_at": "record_updated_at",
        },
    },
    "adverse_events": {
        "table": "poem_complication",
        "columns": {
            "complication_id": "event_id",
            "case_id": "procedure_id",
            "complication_type": "ae_type",
            "onset_date": "onset_date",
            "extra_nights": "unplanned_nights",
            "icu_nights": "icu_nights",
            "transfusion_flag": "transfusion",
            "repeat_endoscopy_flag": "repeat_endoscopy",
            "ir_flag": "interventional_radiology",
            "surgery_flag": "surgery",
            "disability_flag": "permanent_disability",
            "death_flag": "death",
            "aborted_flag": "procedure_aborted",
            "airway_flag": "unplanned_airway_support",
            "consult_flag": "post_procedure_consultation",
            "site_grade": "severity_reported",
            "record_updated_at": "record_updated_at",
        },
    },
    "reinterventions": {
        "table": "poem_retreatment",
        "columns": {
            "retreatment_id": "event_id",
            "case_id": "procedure_id",
            "retreatment_date": "reintervention_date",
            "retreatment_type": "reintervention_type",
            "reason": "indication",
            "record_updated_at": "record_updated_at",
        },
    },
}


def sql_url_setting(site_id: str) -> str:
    return f"POEM_SITE_{site_id.upper()}_DB_URL"


def site_yaml(spec: SiteSpec) -> dict:
    """The site configuration (docs/site-config.md) for a generated site."""
    doc: dict = {
        "site_id": spec.site_id,
        "name": spec.name,
        "tier": spec.tier,
        "country": spec.country,
        "adapter": spec.adapter,
        "expected_cadence_days": spec.expected_cadence_days,
        "landing": spec.site_id,
    }
    if spec.adapter == "csv_layout" and spec.site_id == "northbay":
        doc["mapping"] = NORTHBAY_MAPPING
    elif spec.adapter == "xlsx" and spec.site_id == "lakeshore":
        doc["mapping"] = LAKESHORE_MAPPING
    elif spec.adapter == "sql":
        doc["sql"] = {
            "url_setting": sql_url_setting(spec.site_id),
            "tables": VALLEY_TABLES,
            "incremental_column": "record_updated_at",
        }
    elif spec.adapter == "redcap":
        mapping = _redcap_mapping()
        if mapping is not None:
            doc["redcap"] = mapping
    return doc


def _redcap_mapping() -> dict | None:
    try:
        from poem_registry.adapters import redcap_writer
    except ImportError:
        return None
    mapping = getattr(redcap_writer, "DEMO_REDCAP_MAPPING", None)
    return dict(mapping) if mapping is not None else None

-- ASGE severity (Cotton 2010; clinical-spec §2.1), AGREE grade (Nass 2022; §2.2)
-- and timing (§2.4), all derived from the recorded criteria; the site's own
-- grade is kept beside them to measure agreement.
{%- set count_insufflation = var('count_insufflation_events_as_ae', false) %}

with adverse_events as (
    select * from {{ ref('stg_registry__adverse_events') }}
),

procedures as (
    select procedure_sk, procedure_date, is_index_poem, needle_decompression
    from {{ ref('int_procedures_enriched') }}
),

facts as (
    select
        adverse_events.*,
        procedures.procedure_date,
        procedures.is_index_poem,
        procedures.needle_decompression,
        {{ days_between('procedures.procedure_date', 'adverse_events.onset_date') }} as days_since_procedure,
        adverse_events.ae_type in ('capnoperitoneum', 'capnothorax', 'subcutaneous_emphysema')
            as is_insufflation_event
    from adverse_events
    inner join procedures on procedures.procedure_sk = adverse_events.procedure_sk
),

derived as (
    select
        facts.*,
        case
            when death then 'fatal'
            when unplanned_nights > {{ threshold('asge_moderate_max_nights') }}
                or icu_nights > {{ threshold('asge_moderate_icu_nights') }}
                or surgery
                or permanent_disability then 'severe'
            when unplanned_nights > {{ threshold('asge_mild_max_nights') }}
                or icu_nights >= 1
                or transfusion
                or repeat_endoscopy
                or interventional_radiology
                or unplanned_airway_support then 'moderate'
            when procedure_aborted
                or unplanned_nights >= 1
                or post_procedure_consultation then 'mild'
            else 'incident_only'
        end as asge_severity_from_criteria,
        case
            when death then 'V'
            when icu_nights >= 1 then 'IV'
            when surgery then 'IIIb'
            when repeat_endoscopy or interventional_radiology then 'IIIa'
            when transfusion or unplanned_nights >= 1 or unplanned_airway_support then 'II'
            when procedure_aborted or post_procedure_consultation then 'I'
            {%- if count_insufflation %}
            when is_insufflation_event and needle_decompression then 'IIIa'
            when is_insufflation_event then 'I'
            {%- endif %}
            else 'no_ae'
        end as agree_grade,
        case
            when days_since_procedure < 0 then 'invalid'
            when ae_type in ('bleeding_intraop', 'mucosotomy_intraop')
                or (is_insufflation_event and days_since_procedure = 0) then 'intraprocedural'
            when days_since_procedure <= {{ threshold('ae_early_max_days') }} then 'early'
            when days_since_procedure <= {{ threshold('ae_14d_max_days') }} then 'post_14d'
            when days_since_procedure <= {{ threshold('ae_30d_max_days') }} then 'post_30d'
            else 'late'
        end as ae_timing
    from facts
),

graded as (
    select
        derived.*,
        {%- if count_insufflation %}
        case
            when asge_severity_from_criteria = 'incident_only' and is_insufflation_event then 'mild'
            else asge_severity_from_criteria
        end as asge_severity
        {%- else %}
        asge_severity_from_criteria as asge_severity
        {%- endif %}
    from derived
)

select
    adverse_event_sk,
    site_id,
    event_id,
    procedure_sk,
    patient_sk,
    is_index_poem,
    ae_type,
    is_insufflation_event,
    onset_date,
    days_since_procedure,
    ae_timing,
    days_since_procedure between 0 and {{ threshold('ae_30d_max_days') }} as within_30_days,
    unplanned_nights,
    icu_nights,
    transfusion,
    repeat_endoscopy,
    interventional_radiology,
    surgery,
    permanent_disability,
    death,
    procedure_aborted,
    unplanned_airway_support,
    post_procedure_consultation,
    asge_severity_from_criteria,
    asge_severity,
    case asge_severity
        when 'incident_only' then 0 when 'mild' then 1 when 'moderate' then 2 when 'severe' then 3 when 'fatal' then 4
    end as asge_severity_rank,
    asge_severity <> 'incident_only' as is_adverse_event,
    agree_grade,
    severity_reported,
    case
        when severity_reported is null then null
        else severity_reported = case when asge_severity = 'incident_only' then 'incident' else asge_severity end
    end as severity_reported_agrees
from graded

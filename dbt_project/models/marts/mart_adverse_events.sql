-- The breakdown behind the adverse-event measures P5/P6M/P6S/P7 (clinical-spec §2):
-- events within ae_30d_max_days of each index POEM, counted by site (and 'ALL'),
-- period of the procedure date (quarter, year, all time, as in mart_measures),
-- event class, AE type and ASGE severity. Events without any ASGE criterion are
-- intraprocedural incidents (clinical-spec §2.4), kept apart with a null severity.
-- ae_type = 'all' rows add up the types: there n_patients counts each patient once,
-- under the worst severity of their events, so those rows sum to the patients with
-- any event of the class (the P5 numerator for adverse events).
with index_poems as (
    select procedure_sk, procedure_date, procedure_quarter_start, procedure_year
    from {{ ref('fct_procedure') }}
    where is_index_poem
),

registry_start as (
    select min(procedure_date) as first_procedure_date from index_poems
),

events as (
    select
        ae.site_id,
        ae.patient_sk,
        ae.procedure_sk,
        case when ae.is_adverse_event then 'adverse_event' else 'incident' end as event_class,
        ae.ae_type,
        case when ae.is_adverse_event then ae.asge_severity end as asge_severity,
        case when ae.is_adverse_event then ae.asge_severity_rank else 0 end as severity_rank,
        index_poems.procedure_date,
        index_poems.procedure_quarter_start,
        index_poems.procedure_year
    from {{ ref('fct_adverse_event') }} as ae
    inner join index_poems on index_poems.procedure_sk = ae.procedure_sk
    where ae.within_30_days
),

with_worst as (
    select
        events.*,
        max(severity_rank) over (partition by procedure_sk, event_class) as worst_rank
    from events
),

by_type as (
    select site_id, patient_sk, event_class, ae_type, asge_severity, severity_rank,
        severity_rank = worst_rank as is_worst, procedure_date, procedure_quarter_start, procedure_year
    from with_worst
    union all
    select site_id, patient_sk, event_class, 'all', asge_severity, severity_rank,
        severity_rank = worst_rank, procedure_date, procedure_quarter_start, procedure_year
    from with_worst
),

by_site as (
    select * from by_type
    union all
    select 'ALL', patient_sk, event_class, ae_type, asge_severity, severity_rank, is_worst,
        procedure_date, procedure_quarter_start, procedure_year
    from by_type
),

by_period as (
    {{ expand_reporting_periods('by_site', 'registry_start') }}
),

aggregated as (
    select
        site_id,
        period_type,
        period_label,
        period_start,
        period_end,
        event_class,
        ae_type,
        asge_severity,
        max(severity_rank) as severity_rank,
        count(*) as n_events,
        case
            when ae_type = 'all' then count(distinct case when is_worst then patient_sk end)
            else count(distinct patient_sk)
        end as n_patients
    from by_period
    group by site_id, period_type, period_label, period_start, period_end, event_class, ae_type, asge_severity
)

select
    site_id || ':' || period_type || ':' || period_label || ':' || event_class || ':' || ae_type || ':'
        || coalesce(asge_severity, 'none') as ae_row_sk,
    site_id,
    period_type,
    period_label,
    period_start,
    period_end,
    event_class,
    ae_type,
    asge_severity,
    case when event_class = 'adverse_event' then severity_rank end as asge_severity_rank,
    n_events,
    n_patients,
    {{ is_small_cell('n_events') }} or {{ is_small_cell('n_patients') }} as suppressed,
    {{ as_of_date() }} as as_of
from aggregated

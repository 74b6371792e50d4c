-- Every index POEM in the denominator of every measure of the catalog (clinical-spec
-- §11.5), with whether it is in the numerator. mart_measures aggregates this by
-- site and period; reports can drill down from a rate to its patients.
with index_poems as (
    select * from {{ ref('fct_procedure') }} where is_index_poem
),

windows as (
    select * from {{ ref('mart_outcome_windows') }}
),

reflux as (
    select * from {{ ref('mart_reflux_outcomes') }}
),

ae_30d as (
    select procedure_sk, max(asge_severity_rank) as max_severity_rank
    from {{ ref('int_adverse_events_graded') }}
    where is_adverse_event and within_30_days
    group by procedure_sk
),

mucosotomy_incidents as (
    select distinct procedure_sk
    from {{ ref('int_adverse_events_graded') }}
    where ae_type = 'mucosotomy_intraop'
),

members as (
    select 'P1' as measure_id, 'standard' as denominator_variant, procedure_sk, technical_success as in_numerator,
        cast(null as {{ poem_double() }}) as value
    from index_poems

    {%- for measure_id, window_code, definition in [
        ('P2', 'w_3_6m', 'le3'), ('P2C', 'w_3_6m', 'composite'), ('P3', 'w_12m', 'composite'),
        ('P3E', 'w_12m', 'le3'), ('P3Y2', 'w_24m', 'composite')] %}
    {%- for variant in ['pp', 'itt'] %}
    union all
    select '{{ measure_id }}', '{{ variant | upper }}', procedure_sk, {{ definition }}_{{ variant }}_success, null
    from windows where window_code = '{{ window_code }}' and {{ definition }}_{{ variant }}_denominator
    {%- endfor %}
    {%- endfor %}

    {%- for measure_id, min_rank in [('P5', 1), ('P6M', 2), ('P6S', 3)] %}
    union all
    select '{{ measure_id }}', 'standard', index_poems.procedure_sk,
        coalesce(ae_30d.max_severity_rank >= {{ min_rank }}, false), null
    from index_poems
    left join ae_30d on ae_30d.procedure_sk = index_poems.procedure_sk
    {%- endfor %}

    union all
    select 'P7', 'standard', index_poems.procedure_sk,
        index_poems.mucosotomy_intraop or mucosotomy_incidents.procedure_sk is not null, null
    from index_poems
    left join mucosotomy_incidents on mucosotomy_incidents.procedure_sk = index_poems.procedure_sk

    union all
    select 'P8', 'standard', procedure_sk, baseline_eckardt_valid and hrm_subtype_documented, null
    from index_poems

    {%- for measure_id, window_code in [('P9', 'w_12m'), ('P9A', 'w_3_6m'), ('P9B', 'w_24m')] %}
    union all
    select '{{ measure_id }}', 'standard', procedure_sk, assessed, null
    from windows where window_code = '{{ window_code }}' and eligible
    {%- endfor %}

    union all
    select 'P10', 'standard', procedure_sk, has_egd or has_ph_study, null
    from reflux where eligible_12m

    {%- for measure_id, numerator, denominator in [
        ('P11', 'esophagitis_conclusive', 'has_egd'), ('P11A', 'esophagitis_any', 'has_egd'),
        ('P11C', 'esophagitis_severe', 'has_egd'), ('P11G', 'gerd_objective_aet', 'has_ph_study_off_ppi'),
        ('P11S', 'gerd_symptomatic', 'has_gerdq'), ('P11L', 'gerd_lyon_actionable', 'has_lyon_inputs'),
        ('P12', 'ppi_use_12m', 'ppi_recorded_12m')] %}
    union all
    select '{{ measure_id }}', 'standard', procedure_sk, {{ numerator }}, null
    from reflux where {{ denominator }}
    {%- endfor %}

    union all
    select 'P13', 'standard', procedure_sk, cast(null as boolean), cast(los_nights as {{ poem_double() }})
    from index_poems where los_nights is not null
)

select
    members.measure_id || ':' || members.denominator_variant || ':' || members.procedure_sk as measure_member_sk,
    members.measure_id,
    members.denominator_variant,
    members.procedure_sk,
    index_poems.site_id,
    index_poems.procedure_date,
    index_poems.procedure_quarter_start,
    index_poems.procedure_year,
    index_poems.diagnosis,
    coalesce(members.in_numerator, false) as in_numerator,
    members.value
from members
inner join index_poems on index_poems.procedure_sk = members.procedure_sk

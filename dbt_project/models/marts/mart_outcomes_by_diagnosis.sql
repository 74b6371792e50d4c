-- Clinical success by diagnosis subtype, all sites pooled, all time (clinical-spec
-- §9.1 "by subtype / indication"): diagnosis x window x definition x denominator variant.
with windows as (
    select * from {{ ref('mart_outcome_windows') }}
),

long as (
    {%- for definition, code in [('le3', 'cs_eckardt_le3'), ('composite', 'cs_eckardt_le3_no_reintervention')] %}
    {%- for variant in ['pp', 'itt'] %}
    {% if not loop.first or definition != 'le3' %}union all{% endif %}
    select diagnosis, diagnosis_group, window_code, window_order, '{{ code }}' as definition_code,
        '{{ variant | upper }}' as denominator_variant, {{ definition }}_{{ variant }}_success as success
    from windows where {{ definition }}_{{ variant }}_denominator
    {%- endfor %}
    {%- endfor %}
),

counts as (
    select
        diagnosis, diagnosis_group, window_code, window_order, definition_code, denominator_variant,
        sum(case when success then 1 else 0 end) as numerator,
        count(*) as denominator
    from long
    group by diagnosis, diagnosis_group, window_code, window_order, definition_code, denominator_variant
)

select
    diagnosis || ':' || window_code || ':' || definition_code || ':' || denominator_variant as outcome_sk,
    counts.*,
    {{ safe_rate('numerator', 'denominator') }} as rate,
    {{ wilson_interval('numerator', 'denominator') }},
    'wilson' as ci_method,
    {{ is_small_cell('numerator') }} or {{ is_small_cell('denominator') }} as suppressed,
    {{ as_of_date() }} as as_of
from counts

-- vars.thresholds (read at compile time by the threshold() macro) must equal
-- seeds/cfg_thresholds.csv (the documented source). Returns the keys that differ.
{%- set thresholds = var('thresholds') %}
with from_vars as (
    {%- for key, value in thresholds.items() %}
    select '{{ key }}' as threshold_key, cast({{ value }} as {{ poem_double() }}) as threshold_value
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

from_seed as (
    select key as threshold_key, value as threshold_value from {{ ref('cfg_thresholds') }}
)

select
    coalesce(from_vars.threshold_key, from_seed.threshold_key) as threshold_key,
    from_vars.threshold_value as var_value,
    from_seed.threshold_value as seed_value
from from_vars
full outer join from_seed on from_seed.threshold_key = from_vars.threshold_key
where from_vars.threshold_key is null
   or from_seed.threshold_key is null
   or abs(from_vars.threshold_value - from_seed.threshold_value) > 1e-9

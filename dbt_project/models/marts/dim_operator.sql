with procedures as (
    select * from {{ ref('int_procedures_enriched') }}
)

select
    operator_key,
    count(distinct site_id) as n_sites,
    sum(case when procedure_type_in_scope then 1 else 0 end) as n_in_scope_poems,
    sum(case when is_index_poem then 1 else 0 end) as n_index_poems,
    min(case when procedure_type_in_scope then procedure_date end) as first_poem_date,
    max(case when procedure_type_in_scope then procedure_date end) as last_poem_date
from procedures
group by operator_key

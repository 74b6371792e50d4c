with procedures as (
    select * from {{ ref('int_procedures_enriched') }}
)

select
    site_id,
    count(*) as n_procedures,
    sum(case when is_index_poem then 1 else 0 end) as n_index_poems,
    count(distinct operator_key) as n_operators,
    min(procedure_date) as first_procedure_date,
    max(procedure_date) as last_procedure_date,
    max(_extracted_at) as last_extracted_at
from procedures
group by site_id

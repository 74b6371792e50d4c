with procedures as (
    select
        procedures.*,
        row_number() over (partition by patient_sk order by procedure_date, procedure_sk) as patient_procedure_number
    from {{ ref('int_procedures_enriched') }} as procedures
)

select
    patient_sk,
    site_id,
    patient_key,
    max(case when patient_procedure_number = 1 then sex end) as sex,
    max(case when patient_procedure_number = 1 then birth_year end) as birth_year,
    max(case when patient_procedure_number = 1 then age_at_procedure_capped end) as age_at_first_procedure,
    min(procedure_date) as first_procedure_date,
    count(*) as n_procedures,
    sum(case when is_index_poem then 1 else 0 end) > 0 as has_index_poem
from procedures
group by patient_sk, site_id, patient_key

select
    reinterventions.reintervention_sk,
    reinterventions.site_id,
    reinterventions.event_id,
    reinterventions.procedure_sk,
    reinterventions.patient_sk,
    procedures.is_index_poem,
    reinterventions.reintervention_date,
    {{ days_between('procedures.procedure_date', 'reinterventions.reintervention_date') }} as days_since_procedure,
    reinterventions.reintervention_type,
    reinterventions.indication,
    reinterventions.counts_as_clinical_failure
from {{ ref('stg_registry__reinterventions') }} as reinterventions
inner join {{ ref('int_procedures_enriched') }} as procedures
    on procedures.procedure_sk = reinterventions.procedure_sk

-- No row of a withdrawn patient survives in the patient-level marts.
with withdrawn as (
    select patient_sk from {{ ref('stg_registry__withdrawals') }}
)

{%- set models = ['fct_procedure', 'fct_adverse_event', 'fct_assessment_eckardt', 'fct_assessment_reflux',
                  'fct_assessment_physiology', 'fct_reintervention', 'dim_patient', 'mart_outcome_windows',
                  'mart_durability_input', 'mart_reflux_outcomes'] %}
{%- for model in models %}
{% if not loop.first %}union all{% endif %}
select '{{ model }}' as model_name, patient_sk
from {{ ref(model) }}
where patient_sk in (select patient_sk from withdrawn)
{%- endfor %}

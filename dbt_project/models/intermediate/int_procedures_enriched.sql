with procedures as (
    select * from {{ ref('stg_registry__procedures') }}
),

in_scope_sequence as (
    -- Order of in-scope POEMs per patient and per operator (operators across sites:
    -- operator_key is a registry-wide pseudonym). Ties on date break on procedure_sk.
    select
        procedure_sk,
        row_number() over (partition by patient_sk order by procedure_date, procedure_sk) as patient_poem_number,
        row_number() over (partition by operator_key order by procedure_date, procedure_sk) as operator_case_number
    from procedures
    where procedure_type_in_scope
),

classified as (
    select
        procedures.*,
        in_scope_sequence.patient_poem_number,
        in_scope_sequence.operator_case_number,
        case
            when not procedures.procedure_type_in_scope then 'out_of_scope'
            when procedures.procedure_type = 'redo_poem'
                or coalesce(procedures.prior_poem, false)
                or in_scope_sequence.patient_poem_number > 1 then 'redo'
            else 'index'
        end as procedure_role,
        {{ days_between('procedures.baseline_eckardt_date', 'procedures.procedure_date') }} as baseline_eckardt_days_before
    from procedures
    left join in_scope_sequence on in_scope_sequence.procedure_sk = procedures.procedure_sk
)

select
    classified.*,
    procedure_role = 'index' as is_index_poem,
    cast({{ dbt.date_trunc('quarter', 'procedure_date') }} as date) as procedure_quarter_start,
    cast(extract(year from procedure_date) as integer) as procedure_year,
    least(age_at_procedure, {{ threshold('age_cap_years') }}) as age_at_procedure_capped,
    baseline_eckardt_total is not null as baseline_eckardt_complete,
    coalesce(
        baseline_eckardt_total is not null
        and baseline_eckardt_days_before between 0 and {{ threshold('baseline_eckardt_max_days_before') }},
        false
    ) as baseline_eckardt_valid,
    coalesce(cc_version in ('v2', 'v3', 'v4') and diagnosis not in ('achalasia_unsubtyped', 'other'), false)
        as hrm_subtype_documented,
    case
        when diagnosis in ('achalasia_type_1', 'achalasia_type_2', 'achalasia_type_3', 'achalasia_unsubtyped') then 'achalasia'
        when diagnosis in ('distal_esophageal_spasm', 'hypercontractile_esophagus') then 'spastic_disorder'
        else 'other'
    end as diagnosis_group
from classified

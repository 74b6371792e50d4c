with followups as (
    select * from {{ ref('int_followups_windowed') }}
    where irp_mmhg is not null or les_pressure_mmhg is not null or tbe_5min_cm is not null
),

procedures as (
    select procedure_sk, baseline_irp_mmhg, baseline_les_pressure_mmhg, baseline_tbe_5min_cm
    from {{ ref('int_procedures_enriched') }}
),

changes as (
    select
        followups.assessment_sk,
        followups.site_id,
        followups.procedure_sk,
        followups.patient_sk,
        followups.is_index_poem,
        followups.assessment_date,
        followups.days_since_procedure,
        followups.window_code,
        procedures.baseline_irp_mmhg,
        followups.irp_mmhg,
        followups.irp_mmhg - procedures.baseline_irp_mmhg as irp_change_mmhg,
        procedures.baseline_les_pressure_mmhg,
        followups.les_pressure_mmhg,
        followups.les_pressure_mmhg - procedures.baseline_les_pressure_mmhg as les_pressure_change_mmhg,
        procedures.baseline_tbe_5min_cm,
        followups.tbe_5min_cm,
        followups.tbe_5min_cm - procedures.baseline_tbe_5min_cm as tbe_5min_change_cm,
        case
            when procedures.baseline_tbe_5min_cm > 0 and followups.tbe_5min_cm is not null
                then (procedures.baseline_tbe_5min_cm - followups.tbe_5min_cm) / procedures.baseline_tbe_5min_cm
        end as tbe_5min_reduction_fraction
    from followups
    inner join procedures on procedures.procedure_sk = followups.procedure_sk
)

select
    changes.*,
    case
        when tbe_5min_reduction_fraction is not null
            then tbe_5min_reduction_fraction >= {{ threshold('tbe_improvement_min_fraction') }}
    end as tbe_improved
from changes

-- Withdrawals are applied whatever as_of is: a withdrawn patient must disappear
-- from every model from the next run on, including rebuilds of past editions.
select
    _site_id as site_id,
    patient_key,
    _site_id || ':' || patient_key as patient_sk,
    min(withdrawn_at) as withdrawn_at
from {{ source('registry', 'withdrawals') }}
group by _site_id, patient_key

-- The thin-slice mart and measure P1 of mart_measures count the same index POEMs.
select quarterly.site_id, quarterly.quarter_start
from {{ ref('mart_technical_success_quarterly') }} as quarterly
left join {{ ref('mart_measures') }} as measures
    on measures.measure_id = 'P1'
    and measures.period_type = 'quarter'
    and measures.site_id = quarterly.site_id
    and measures.period_start = quarterly.quarter_start
where measures.measure_id is null
   or measures.numerator <> quarterly.numerator
   or measures.denominator <> quarterly.denominator

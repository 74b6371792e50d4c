-- Every proportion lies inside its Wilson interval, and the interval inside [0, 1].
select measure_row_sk, rate, ci_lower, ci_upper
from {{ ref('mart_measures') }}
where statistic = 'proportion'
  and denominator > 0
  and not (ci_lower >= 0 and ci_lower <= rate + 1e-12 and rate <= ci_upper + 1e-12 and ci_upper <= 1)

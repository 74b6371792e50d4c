{#- One copy of each row per reporting period it belongs to: its quarter, its year and all time
    (registry start to the as-of date). `rows` needs procedure_date, procedure_quarter_start and
    procedure_year; `registry_start` has first_procedure_date. Used by every reporting mart so the
    periods are defined once. -#}
{% macro expand_reporting_periods(rows, registry_start) -%}
    select {{ rows }}.*, 'quarter' as period_type, procedure_quarter_start as period_start,
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('month', 3, 'procedure_quarter_start')) }} as date) as period_end,
        cast(procedure_year as varchar) || '-Q'
            || cast(cast(extract(quarter from procedure_quarter_start) as integer) as varchar) as period_label
    from {{ rows }}
    union all
    select {{ rows }}.*, 'year', cast({{ dbt.date_trunc('year', 'procedure_date') }} as date),
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('year', 1, dbt.date_trunc('year', 'procedure_date'))) }} as date),
        cast(procedure_year as varchar)
    from {{ rows }}
    union all
    select {{ rows }}.*, 'all_time', {{ registry_start }}.first_procedure_date, {{ as_of_date() }}, 'all'
    from {{ rows }}
    cross join {{ registry_start }}
{%- endmacro %}

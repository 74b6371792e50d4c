{#- Whole days from one date to another (cross-database via dbt.datediff). -#}
{% macro days_between(from_date, to_date) -%}
    {{ dbt.datediff(from_date, to_date, 'day') }}
{%- endmacro %}

{#- A date plus a number of days, as a date on every adapter. -#}
{% macro add_days(date_expr, days) -%}
    cast({{ dbt.dateadd('day', days, date_expr) }} as date)
{%- endmacro %}

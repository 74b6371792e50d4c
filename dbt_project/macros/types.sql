{#- 8-byte float on every adapter (dbt.type_float() is a 4-byte float on DuckDB). -#}
{% macro poem_double() -%}
    double precision
{%- endmacro %}

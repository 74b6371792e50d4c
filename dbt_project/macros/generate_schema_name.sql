{#- One fixed layout in the DuckDB warehouse file (seeds, staging, intermediate,
    marts), so reports can read marts.<model>. On any other target the layer
    schemas are prefixed with the target schema, so several builds (for example
    one per test run) can share one PostgreSQL database. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.type == 'duckdb' -%}
        {{ custom_schema_name | trim }}
    {%- else -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

{#- The date every measure is computed as of: var('as_of') (YYYY-MM-DD) or today.
    Returned as a SQL date literal so it renders the same on DuckDB and PostgreSQL. -#}
{% macro as_of_date(as_of=none) -%}
    {%- set value = as_of if as_of is not none else var('as_of', none) -%}
    {%- if value is none or value == '' -%}
        {%- set value = modules.datetime.date.today().isoformat() -%}
    {%- endif -%}
    {%- set text = value | string -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
        {{ exceptions.raise_compiler_error("var as_of must be a date YYYY-MM-DD, got '" ~ text ~ "'") }}
    {%- endif -%}
    cast('{{ text }}' as date)
{%- endmacro %}

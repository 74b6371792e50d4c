{#- A numeric threshold by key, from var('thresholds') (the compile-time copy of
    seeds/cfg_thresholds.csv; the singular test assert_thresholds_match_seed keeps
    the two equal). Never write a clinical threshold as a literal in SQL. -#}
{% macro threshold(key) -%}
    {%- set thresholds = var('thresholds', {}) -%}
    {%- if key not in thresholds -%}
        {{ exceptions.raise_compiler_error("Unknown threshold '" ~ key ~ "': add it to seeds/cfg_thresholds.csv and vars.thresholds in dbt_project.yml") }}
    {%- endif -%}
    {{ thresholds[key] }}
{%- endmacro %}

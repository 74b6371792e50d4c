{#- Small-cell rule (clinical-spec §8.5): a count from 1 to small_cell_min - 1
    must not be shown in cross-site outputs; zero may be shown. -#}
{% macro is_small_cell(count) -%}
    ({{ count }} >= 1 and {{ count }} < {{ threshold('small_cell_min') }})
{%- endmacro %}

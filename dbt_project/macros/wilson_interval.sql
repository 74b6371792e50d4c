{#- Wilson score interval for num/den (Wilson 1927; Newcombe 1998 method 3;
    clinical-spec §8.2):
      centre = (p + z²/2n) / (1 + z²/n)
      half   = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    Renders "<lower> as <prefix>_lower, <upper> as <prefix>_upper"; both are null
    when den = 0. Portable SQL (no adapter-specific functions). The interval always
    contains p mathematically; the bounds are clamped to p so floating-point rounding
    (1 - 2e-16 at p = 1) cannot put the rate outside its own interval. -#}
{% macro wilson_interval(num, den, z=none, prefix='ci') -%}
    {{ wilson_bound(num, den, z, 'lower') }} as {{ prefix }}_lower,
    {{ wilson_bound(num, den, z, 'upper') }} as {{ prefix }}_upper
{%- endmacro %}

{% macro wilson_bound(num, den, z=none, bound='lower') -%}
    {%- set z = z if z is not none else threshold('wilson_z') -%}
    {%- set n = 'cast(' ~ den ~ ' as ' ~ poem_double() ~ ')' -%}
    {%- set p = '(cast(' ~ num ~ ' as ' ~ poem_double() ~ ') / nullif(' ~ n ~ ', 0))' -%}
    {%- set sign = '-' if bound == 'lower' else '+' -%}
    case when {{ den }} > 0 then
        {%- if bound == 'lower' %} least({{ p }}, greatest(0.0, {% else %} greatest({{ p }}, least(1.0, {% endif -%}
        ({{ p }} + ({{ z }} * {{ z }}) / (2 * {{ n }})
          {{ sign }} {{ z }} * sqrt({{ p }} * (1 - {{ p }}) / {{ n }} + ({{ z }} * {{ z }}) / (4 * {{ n }} * {{ n }})))
        / (1 + ({{ z }} * {{ z }}) / {{ n }})))
    end
{%- endmacro %}

{#- A proportion as a double, null when the denominator is 0. -#}
{% macro safe_rate(num, den) -%}
    cast({{ num }} as {{ poem_double() }}) / nullif(cast({{ den }} as {{ poem_double() }}), 0)
{%- endmacro %}

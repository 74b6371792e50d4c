{#- Latest version of each record of a raw table, as of var('as_of').

    A record key re-sent later is a correction; the winner is the row with the
    latest record_updated_at (nulls last), then the latest _extracted_at, then
    the highest _batch_seq (exchange format "Extracts"). Raw rows extracted after
    as_of are ignored.

    Incremental runs read only raw rows loaded since the last run (or extracted
    after the previous as_of) and merge them with the current winner of the same
    key, so the work grows with the new batch, not with history. Because the
    stored winner already beat every older row, winner(stored, new) = winner(all).
    An as_of earlier than the one the table was built at cannot be applied
    incrementally (later versions are already merged in): that needs
    --full-refresh, which poem_registry.build.run_dbt adds by itself. -#}
{% macro latest_version(table_name, key_columns) -%}
{%- set relation = source('registry', table_name) -%}
{#- Columns of the physical raw table. It is looked up by name rather than through
    source(), which is a fixture CTE inside unit tests. -#}
{%- set columns = [] -%}
{%- if execute -%}
    {%- set raw_table = adapter.get_relation(database=target.database, schema=var('raw_schema', 'raw'), identifier=table_name) -%}
    {%- if raw_table is none -%}
        {{ exceptions.raise_compiler_error("Raw table " ~ var('raw_schema', 'raw') ~ "." ~ table_name ~ " does not exist: run ingestion (poem_registry.warehouse.ensure_schema) first.") }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(raw_table) | map(attribute='name') | list -%}
{%- endif -%}
{%- set as_of = as_of_date() -%}
{%- set keys = ['_site_id'] + key_columns -%}
{%- if is_incremental() and execute -%}
    {%- set built = run_query("select cast(max(_built_as_of) as varchar(10)) from " ~ this).columns[0].values()[0] -%}
    {%- set requested = as_of | replace("cast('", "") | replace("' as date)", "") -%}
    {%- if built is not none and requested < built -%}
        {{ exceptions.raise_compiler_error(this ~ " was built as of " ~ built ~ "; as_of " ~ requested ~ " is earlier and needs a full rebuild: run dbt with --full-refresh (poem_registry.build.run_dbt does this when given a past as_of).") }}
    {%- endif -%}
{%- endif -%}
with new_rows as (
    select *
    from {{ relation }}
    where cast(_extracted_at as date) <= {{ as_of }}
    {%- if is_incremental() %}
      and (
        _loaded_at > (select coalesce(max(_loaded_at), cast('1900-01-01' as timestamp)) from {{ this }})
        or cast(_extracted_at as date) > (select coalesce(max(_built_as_of), cast('1900-01-01' as date)) from {{ this }})
      )
    {%- endif %}
),

candidates as (
    select {{ columns | join(', ') }} from new_rows
    {%- if is_incremental() %}
    union all
    select {{ columns | join(', ') }}
    from {{ this }} as stored
    where exists (
        select 1 from new_rows
        where {% for k in keys %}new_rows.{{ k }} = stored.{{ k }}{% if not loop.last %} and {% endif %}{% endfor %}
    )
    {%- endif %}
),

ranked as (
    select
        candidates.*,
        row_number() over (
            partition by {{ keys | join(', ') }}
            order by
                record_updated_at desc nulls last,
                _extracted_at desc,
                _batch_seq desc
        ) as version_rank
    from candidates
)

select
    {{ columns | join(',\n    ') }},
    {{ as_of }} as _built_as_of
from ranked
where version_rank = 1
{%- endmacro %}

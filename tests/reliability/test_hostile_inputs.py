"""Crafted hostile deliveries and configuration (beyond the ~29 bad inputs of tests/ingest).

Each case asserts the message (site, file or key, and what is wrong) and that nothing is lost: the
delivered bytes are untouched in landing, nothing was written outside it, and loaded + quarantined
rows account for every delivered row.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import duckdb
import pytest

from poem_registry.adapters import get_adapter
from poem_registry.adapters.base import DeliveryError
from poem_registry.ingest import ingest
from poem_registry.sites import SiteConfigError, load_site, load_sites
from tests.ingest.conftest import procedure, to_csv, write_delivery, write_site

pytestmark = pytest.mark.xdist_group("reliability")

GOOD = to_csv([procedure("P1"), procedure("P2")], "procedures")


def _zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _symlink_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


ZIP_CASES = {
    "zip member with backslash traversal": (
        [("..\\..\\evil.csv", b"x"), ("procedures.csv", GOOD)],
        "unsafe path",
    ),
    "zip member with nested traversal": (
        [("a/b/../../../evil.csv", b"x"), ("procedures.csv", GOOD)],
        "unsafe path",
    ),
    "zip member with a Windows drive path": (
        [("C:/evil.csv", b"x"), ("procedures.csv", GOOD)],
        "unsafe path",
    ),
    "zip member that is a symlink": (
        [(_symlink_member("followups.csv", "/etc/passwd"), b"/etc/passwd"), ("procedures.csv", GOOD)],
        "symbolic link",
    ),
    "zip with too many members": ([(f"f{i}.txt", b"") for i in range(1001)], "entries (limit 1000)"),
    "zip with the same file twice in two folders": (
        [("a/procedures.csv", GOOD), ("b/procedures.csv", GOOD)],
        "twice",
    ),
    "zip that is not a zip": (None, "not a readable zip"),
}


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_crafted_zip_is_quarantined_whole_without_extracting(poem_home, case, scoreboard):
    write_site(poem_home.sites_dir, "alpha")
    members, expected = ZIP_CASES[case]
    data = b"PK\x03\x04 this is not really a zip" if members is None else _zip(members)
    (poem_home.landing_dir / "alpha").mkdir(parents=True)
    path = poem_home.landing_dir / "alpha" / "2024-04-01.zip"
    path.write_bytes(data)
    before = sorted(p.name for p in poem_home.landing_dir.rglob("*"))
    summary = ingest(poem_home)
    assert summary.site_errors == {}
    [outcome] = summary.outcomes
    assert outcome.status == "quarantined" and expected in outcome.message, outcome.message
    assert "alpha" in outcome.message and "2024-04-01.zip" in outcome.message
    assert (Path(outcome.quarantine_path) / "report.md").is_file()
    assert path.read_bytes() == data and sorted(p.name for p in poem_home.landing_dir.rglob("*")) == before
    assert not list(poem_home.home.rglob("evil.csv"))
    with duckdb.connect(str(poem_home.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from raw.procedures").fetchone()[0] == 0
    scoreboard.bad_input(case)


def test_zip_whose_header_lies_about_its_size_is_quarantined(poem_home, scoreboard):
    """A bomb variant: the central directory claims a tiny entry, the stream expands to much more."""
    write_site(poem_home.sites_dir, "alpha")
    data = bytearray(_zip([("procedures.csv", b"0" * 2_000_000)]))
    # patch the uncompressed size in the central directory and local header to 100 bytes
    for sig in (b"PK\x01\x02", b"PK\x03\x04"):
        at = data.find(sig)
        off = at + (24 if sig == b"PK\x01\x02" else 22)
        data[off : off + 4] = (100).to_bytes(4, "little")
    (poem_home.landing_dir / "alpha").mkdir(parents=True)
    (poem_home.landing_dir / "alpha" / "2024-04-01.zip").write_bytes(bytes(data))
    [outcome] = ingest(poem_home).outcomes
    assert outcome.status == "quarantined"
    assert "alpha" in outcome.message and ("zip" in outcome.message.lower() or "CRC" in outcome.message)
    scoreboard.bad_input("zip whose header lies about its size")


SITE_FILE_CASES = {
    "site id with a path separator": ("site_id: ../evil\nname: x\nadapter: canonical\n", "site_id"),
    "site id with a backslash": ("site_id: 'a\\\\b'\nname: x\nadapter: canonical\n", "site_id"),
    "landing folder with a path separator": (
        "site_id: evil\nname: x\nadapter: canonical\nlanding: ../../etc\n",
        "landing",
    ),
    "absolute landing folder": ("site_id: evil\nname: x\nadapter: canonical\nlanding: /etc\n", "landing"),
    "unknown adapter name used as a module path": ("site_id: evil\nname: x\nadapter: os.path\n", "adapter"),
    "site file that is not YAML": ("site_id: [evil\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(SITE_FILE_CASES))
def test_hostile_site_configuration_is_refused_by_name(tmp_path, case, scoreboard):
    body, key = SITE_FILE_CASES[case]
    path = tmp_path / "evil.yml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(SiteConfigError) as err:
        load_site(path)
    assert str(path) in str(err.value) and key in str(err.value)
    with pytest.raises(SiteConfigError):
        load_sites(tmp_path)
    scoreboard.bad_input(case)


def test_delivery_folder_names_with_markup_are_handled_as_text(poem_home, scoreboard):
    write_site(poem_home.sites_dir, "alpha")
    extract = "<img src=x onerror=alert(1)> ; drop table raw.procedures"
    folder = write_delivery(poem_home.landing_dir, "alpha", extract, {"procedures.csv": b""})
    [outcome] = ingest(poem_home).outcomes
    assert outcome.status == "quarantined" and "empty" in outcome.message
    assert Path(outcome.quarantine_path).resolve().is_relative_to(poem_home.quarantine_dir.resolve())
    assert (folder / "procedures.csv").exists()
    with duckdb.connect(str(poem_home.warehouse_path), read_only=True) as con:
        assert con.execute("select extract_id from ingest.batches").fetchone()[0] == extract
        assert con.execute("select count(*) from raw.procedures").fetchone()[0] == 0  # the table survived
    scoreboard.bad_input("extract folder name with markup and SQL")


def test_nested_folder_in_a_delivery_is_not_read(poem_home, scoreboard):
    write_site(poem_home.sites_dir, "alpha")
    folder = write_delivery(poem_home.landing_dir, "alpha", "2024-04-01", {"procedures.csv": GOOD})
    (folder / "sub").mkdir()
    (folder / "sub" / "followups.csv").write_bytes(b"garbage")
    [outcome] = ingest(poem_home).outcomes
    assert outcome.status == "committed" and outcome.rows_loaded == {"procedures": 2}
    scoreboard.bad_input("nested folder inside a delivery")


ROW_CASES = {
    "huge text field (2 MB)": procedure("P3", aborted_reason="A" * 2_000_000, technical_success="false"),
    "NUL bytes in a field": procedure("P3", diagnosis="achalasia\x00type_2"),
    "right-to-left override in an id": procedure("P3\u202egpj.exe"),
    "id of 5000 characters": procedure("P" * 5000),
    "code with trailing zero-width space": procedure("P3", diagnosis="achalasia_type_2\u200b"),
    "number with thousands of digits": procedure("P3", procedure_minutes="9" * 4000),
}


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_hostile_field_values_are_loaded_or_quarantined_never_crash(poem_home, case, scoreboard):
    write_site(poem_home.sites_dir, "alpha")
    rows = [procedure(f"G{i}") for i in range(9)] + [ROW_CASES[case]]
    data = to_csv(rows, "procedures")
    folder = write_delivery(poem_home.landing_dir, "alpha", "2024-04-01", {"procedures.csv": data})
    summary = ingest(poem_home)
    assert summary.site_errors == {}
    [outcome] = summary.outcomes
    assert outcome.status in ("committed", "partially_quarantined", "quarantined"), outcome.message
    if outcome.status == "quarantined":
        assert "alpha" in outcome.message and "procedures.csv" in outcome.message
    else:
        assert outcome.loaded + outcome.quarantined == len(rows)  # nothing lost
    if outcome.quarantined:
        assert (Path(outcome.quarantine_path) / "report.md").is_file()
    assert (folder / "procedures.csv").read_bytes() == data
    scoreboard.bad_input(case)


FILE_CASES = {
    "UTF-16 file": ("procedures.csv", GOOD.decode().encode("utf-16"), "UTF-8"),
    "ragged rows": (
        "procedures.csv",
        GOOD + b"P9,x,y,z,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18\r\n",
        None,
    ),
    "unterminated quote": ("procedures.csv", GOOD + b'"P9,unterminated\r\n', None),
    "10000 columns": ("procedures.csv", (",".join(f"c{i}" for i in range(10000)) + "\n1\n").encode(), None),
    "binary file named .csv": ("procedures.csv", bytes(range(256)) * 40, None),
    "manifest that is not JSON": ("manifest.json", b"{not json", "manifest"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_broken_files_are_quarantined_with_a_clear_message(poem_home, case, scoreboard):
    write_site(poem_home.sites_dir, "alpha")
    name, data, expected = FILE_CASES[case]
    files = {name: data} if name == "procedures.csv" else {"procedures.csv": GOOD, name: data}
    folder = write_delivery(poem_home.landing_dir, "alpha", "2024-04-01", files)
    summary = ingest(poem_home)
    assert summary.site_errors == {}
    [outcome] = summary.outcomes
    assert outcome.status in ("quarantined", "partially_quarantined"), (outcome.status, outcome.message)
    if outcome.status == "quarantined":
        assert "alpha" in outcome.message
        if expected:
            assert expected in outcome.message, outcome.message
        with duckdb.connect(str(poem_home.warehouse_path), read_only=True) as con:
            assert con.execute("select count(*) from raw.procedures").fetchone()[0] == 0
    assert (Path(outcome.quarantine_path) / "report.md").is_file()
    for n, d in files.items():
        assert (folder / n).read_bytes() == d
    scoreboard.bad_input(case)


SQL_CONFIG_CASES = {
    "sql table name with a statement": (
        {"procedures": {"table": "procedures; drop table procedures"}},
        "sql.tables.procedures.table",
    ),
    "sql table name with quotes": (
        {"procedures": {"table": 'procedures" or "1"="1'}},
        "sql.tables.procedures",
    ),
    "sql schema-qualified name with three parts": ({"procedures": {"table": "a.b.c"}}, "schema.table"),
    "sql column name with SQL": (
        {"procedures": {"table": "procedures", "columns": {"id) from x --": "x"}}},
        "sql.tables.procedures.columns",
    ),
    "sql query with two statements": (
        {"procedures": {"query": "select * from procedures; delete from procedures"}},
        "';'",
    ),
    "sql query with a comment": ({"procedures": {"query": "select * from procedures -- x"}}, "comment"),
    "sql query that writes": ({"procedures": {"query": "select * into copy_of from procedures"}}, "'into'"),
    "sql query that attaches a file": (
        {"procedures": {"query": "select * from pragma_table_info('x') where attach"}},
        "attach",
    ),
}


@pytest.mark.parametrize("case", sorted(SQL_CONFIG_CASES))
def test_sql_identifiers_and_queries_from_configuration_are_validated_before_use(
    tmp_path, monkeypatch, case, scoreboard
):
    import sqlite3

    import yaml

    tables, expected = SQL_CONFIG_CASES[case]
    db = tmp_path / "site.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table procedures (procedure_id text, record_updated_at text)")
        con.execute("insert into procedures values ('P1', '2024-01-01')")
    monkeypatch.setenv("POEM_SITE_EVIL_DB_URL", f"sqlite:///{db}")
    path = tmp_path / "evil.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "site_id": "evil",
                "name": "Evil",
                "adapter": "sql",
                "sql": {"url_setting": "POEM_SITE_EVIL_DB_URL", "tables": tables},
            }
        )
    )
    site = load_site(path)
    with pytest.raises(DeliveryError) as err:
        get_adapter("sql").discover(site, None)
    assert err.value.rule == "site_config" and "site evil" in str(err.value) and expected in str(err.value)
    with sqlite3.connect(db) as con:  # nothing ran against the site's database
        assert con.execute("select count(*) from procedures").fetchone()[0] == 1
        assert [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")] == [
            "procedures"
        ]
    scoreboard.bad_input(case)


def test_sql_url_in_the_site_file_instead_of_a_variable_name_is_refused(tmp_path, scoreboard):
    path = tmp_path / "evil.yml"
    path.write_text(
        "site_id: evil\nname: Evil\nadapter: sql\nsql:\n  url_setting: postgresql://u:pw@h/db\n"
        "  tables:\n    procedures: {table: procedures}\n"
    )
    with pytest.raises(DeliveryError, match="NAME of an environment variable"):
        get_adapter("sql").discover(load_site(path), None)
    scoreboard.bad_input("database URL with password in the site file")

"""Reading delivery containers safely: extract folders and zip files.

Site files are untrusted. Zip members are read into memory after checking for
absolute paths, ``..``, symlinks and decompression bombs; nothing is extracted
to disk, so a crafted archive cannot write outside the landing folder.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path, PurePosixPath

from poem_registry.adapters.base import DeliveryError

MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
MAX_COMPRESSION_RATIO = 200
MAX_MEMBERS = 1000


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_zip_members(path: Path, site_id: str) -> dict[str, bytes]:
    """File name (without folders) -> bytes, for every regular file in a safe zip."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DeliveryError(
            f"site {site_id}: {path.name} is not a readable zip file ({exc}); re-create the archive and deliver it again",
            file_name=path.name,
        ) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise DeliveryError(f"site {site_id}: {path.name} has {len(infos)} entries (limit {MAX_MEMBERS})",
                                file_name=path.name, rule="zip_safety")
        total = 0
        members: dict[str, bytes] = {}
        for info in infos:
            name = info.filename
            pure = PurePosixPath(name.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
                raise DeliveryError(
                    f"site {site_id}: {path.name} contains an unsafe path {name!r} (absolute or with '..'); "
                    "the archive was rejected without extracting anything",
                    file_name=path.name, rule="zip_safety",
                )
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DeliveryError(f"site {site_id}: {path.name} contains a symbolic link {name!r}; not allowed",
                                    file_name=path.name, rule="zip_safety")
            if info.is_dir():
                continue
            total += info.file_size
            if total > MAX_UNCOMPRESSED_BYTES or (
                info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO
            ):
                raise DeliveryError(
                    f"site {site_id}: {path.name} expands to more than allowed (entry {name!r}: "
                    f"{info.file_size} bytes from {info.compress_size}); possible zip bomb, rejected",
                    file_name=path.name, rule="zip_safety",
                )
            base = pure.name
            if base in members:
                raise DeliveryError(f"site {site_id}: {path.name} contains {base} twice", file_name=path.name)
            with archive.open(info) as fh:
                data = fh.read(MAX_UNCOMPRESSED_BYTES + 1)
            if len(data) != info.file_size:
                raise DeliveryError(f"site {site_id}: {path.name} entry {name!r} size does not match its header",
                                    file_name=path.name, rule="zip_safety")
            members[base] = data
        return members


def read_folder_files(path: Path, site_id: str) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    for f in sorted(path.iterdir()):
        if f.is_symlink():
            raise DeliveryError(f"site {site_id}: {f.name} in {path.name} is a symbolic link; deliver the file itself",
                                file_name=f.name, rule="symlink")
        if f.is_file() and not f.name.startswith("."):
            members[f.name] = f.read_bytes()
    return members


def delivery_fingerprint(path: Path) -> str:
    """Content fingerprint of a delivery (folder or single file), cheap to compute before parsing."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()

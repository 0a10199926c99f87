"""cephalo.datasets.fetch, the data sets' release specs and `cephalo download`: a loopback HTTP
server, no network.

Every failure test checks the two promises: a clear DownloadError naming the URL/file,
and nothing partial at (or beside) the destination.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import shutil
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cephalo.datasets import get_release
from cephalo.datasets.fetch import archive
from cephalo.datasets.fetch.archive import sniff_archive
from cephalo.datasets.fetch.layout import validate_layout
from cephalo.datasets.fetch.release import FetchSettings, MissingChecksumWarning, fetch_release
from cephalo.datasets.fetch.spec import PROVENANCE_FILE
from cephalo.errors import ConfigError, DownloadError
from httpserver import LoopbackServer, Route

SPLITS = ("train", "valid", "test")


# ----------------------------------------------------------------------------- builders


def aariz_members(root: str = "Aariz", splits=SPLITS) -> dict[str, bytes]:
    """A tiny archive tree with the Aariz release layout (2 images per split)."""
    m: dict[str, bytes] = {}
    for s in splits:
        for i in range(2):
            cid = f"c{s}{i:02d}"
            m[f"{root}/{s}/Cephalograms/{cid}.png"] = b"\x89PNG\r\n\x1a\n" + bytes([i]) * 64
            for who in ("Senior", "Junior"):
                m[f"{root}/{s}/Annotations/Cephalometric Landmarks/{who} Orthodontists/{cid}.json"] = json.dumps(
                    {"ceph_id": cid, "landmarks": []}
                ).encode()
            m[f"{root}/{s}/Annotations/CVM Stages/{cid}.json"] = b'{"cvm_stage": {"value": 1}}'
    m[f"{root}/cephalogram_machine_mappings.csv"] = b"\xef\xbb\xbfcephalogram_id,machine,pixel_size,image_format,mode\n"
    m[f"{root}/Readme.txt"] = b"tiny test release\n"
    return m


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def md5(b: bytes) -> str:
    return "md5:" + hashlib.md5(b).hexdigest()


def sha256(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def assert_nothing_partial(dest: Path) -> None:
    """dest absent and no temporary folder/file beside it."""
    assert not dest.exists()
    if dest.parent.exists():
        leftovers = [p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}")]
        assert leftovers == []


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def aariz_zip() -> bytes:
    return make_zip(aariz_members())


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


# ----------------------------------------------------------------------------- release specs


def test_release_specs_are_pinned():
    a = get_release("aariz")
    assert a.files[0].url == "https://ndownloader.figshare.com/files/51041642"
    assert a.files[0].known_hash == "md5:e0bd645bca6759abdae4f199d841bda6"
    assert a.files[0].size == 2_098_209_792
    i = get_release("isbi2015")
    assert i.files[0].known_hash is None and "3471833" in i.files[0].url
    with pytest.raises(ValueError, match="aariz, isbi2015"):
        get_release("nope")


def test_sniff_archive(tmp_path, aariz_zip):
    cases = {
        "a.bin": (aariz_zip, "zip"),
        "b.bin": (make_targz({"x/y": b"1"}), "tar.gz"),
        "c.bin": (b"  \n<!DOCTYPE html><html><body>Sign in</body></html>", "html"),
        "d.bin": (b'{"message": "File not found"}', "json"),
        "e.bin": (b"Rar!\x1a\x07\x00" + b"\0" * 20, "rar"),
        "f.bin": (b"", "empty"),
        "g.bin": (b"hello world", "unknown"),
    }
    for name, (data, kind) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert sniff_archive(tmp_path / name) == kind, name
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("a.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"1"))
    (tmp_path / "h.bin").write_bytes(buf.getvalue())
    assert sniff_archive(tmp_path / "h.bin") == "tar"


# ----------------------------------------------------------------------------- success paths


def test_http_success_unpacks_validates_and_caches(server, tmp_path, cache, aariz_zip):
    url = server.add("/files/aariz", Route(body=aariz_zip))
    dest = tmp_path / "data" / "aariz"
    out = fetch_release(
        "aariz", dest, url=url, known_hash=md5(aariz_zip), settings=FetchSettings(cache_dir=cache), progress=False
    )
    assert out == dest
    assert (dest / "Aariz/train/Cephalograms/ctrain00.png").read_bytes() == aariz_members()[
        "Aariz/train/Cephalograms/ctrain00.png"
    ]
    n_files = sum(1 for p in dest.rglob("*") if p.is_file())
    assert n_files == len(aariz_members()) + 1  # + provenance
    prov = json.loads((dest / PROVENANCE_FILE).read_text())
    assert prov["dataset"] == "aariz" and prov["source_kind"] == "url"
    assert prov["sources"][0]["sha256"] == sha256(aariz_zip)
    assert prov["sources"][0]["known_hash"] == md5(aariz_zip)
    assert prov["sources"][0]["size"] == len(aariz_zip)
    validate_layout(dest, get_release("aariz").layout, source="x")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["aariz"]  # no temp dirs beside dest
    # cached archive, no .part left behind
    assert [p.suffix for p in cache.iterdir()] == [".zip"]

    # second call: dest already holds the release -> no request, nothing rewritten
    n_req = len(server.requests)
    mtime = (dest / PROVENANCE_FILE).stat().st_mtime_ns
    fetch_release(
        "aariz", dest, url=url, known_hash=md5(aariz_zip), settings=FetchSettings(cache_dir=cache), progress=False
    )
    assert len(server.requests) == n_req and (dest / PROVENANCE_FILE).stat().st_mtime_ns == mtime
    # into a new dest: served from the pooch cache (no request), unpacked again
    fetch_release(
        "aariz",
        tmp_path / "data" / "again",
        url=url,
        known_hash=md5(aariz_zip),
        settings=FetchSettings(cache_dir=cache),
        progress=False,
    )
    assert len(server.requests) == n_req and (tmp_path / "data/again/Aariz/Readme.txt").is_file()


def test_targz_archive_and_keep_archive_false(server, tmp_path, cache):
    body = make_targz(aariz_members())
    url = server.add("/aariz.tar.gz", Route(body=body))
    dest = tmp_path / "aariz"
    fetch_release(
        "aariz",
        dest,
        url=url,
        known_hash=sha256(body),
        settings=FetchSettings(cache_dir=cache, keep_archive=False),
        progress=False,
    )
    assert (dest / "Aariz/valid/Cephalograms/cvalid01.png").is_file()
    assert list(cache.iterdir()) == []


def test_resume_after_truncated_download(server, tmp_path, cache, aariz_zip):
    cut = len(aariz_zip) // 3
    route = Route(body=aariz_zip, truncate_at=cut, times=1, then=Route(body=aariz_zip))
    url = server.add("/aariz.zip", route)
    dest = tmp_path / "aariz"
    with pytest.raises(DownloadError) as ei:
        fetch_release(
            "aariz", dest, url=url, known_hash=md5(aariz_zip), settings=FetchSettings(cache_dir=cache), progress=False
        )
    msg = str(ei.value)
    assert url in msg and ("truncated" in msg or "interrupted" in msg) and "resume" in msg
    assert_nothing_partial(dest)
    parts = list(cache.glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == cut

    fetch_release(
        "aariz", dest, url=url, known_hash=md5(aariz_zip), settings=FetchSettings(cache_dir=cache), progress=False
    )
    assert server.range_requests("/aariz.zip") == ["", f"bytes={cut}-"]
    assert (dest / "Aariz/test/Cephalograms/ctest01.png").is_file()
    assert list(cache.glob("*.part")) == []
    assert json.loads((dest / PROVENANCE_FILE).read_text())["sources"][0]["sha256"] == sha256(aariz_zip)


def test_resume_restarts_when_server_ignores_range(server, tmp_path, cache, aariz_zip):
    route = Route(body=aariz_zip, truncate_at=100, ranges=False, times=1, then=Route(body=aariz_zip, ranges=False))
    url = server.add("/a.zip", route)
    with pytest.raises(DownloadError):
        fetch_release(
            "aariz",
            tmp_path / "d",
            url=url,
            known_hash=md5(aariz_zip),
            settings=FetchSettings(cache_dir=cache),
            progress=False,
        )
    fetch_release(
        "aariz",
        tmp_path / "d",
        url=url,
        known_hash=md5(aariz_zip),
        settings=FetchSettings(cache_dir=cache),
        progress=False,
    )
    assert (tmp_path / "d/Aariz/train/Cephalograms").is_dir()


# ----------------------------------------------------------------------------- faulty responses


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_instead_of_archive(server, tmp_path, cache, ctype):
    page = b"<!DOCTYPE html>\n<html><head><title>figshare</title></head><body>Sign in</body></html>"
    url = server.add("/files/51041642", Route(body=page, content_type=ctype))
    dest = tmp_path / "aariz"
    # no checksum: only content sniffing can tell (with one, the hash would also fail)
    with pytest.raises(DownloadError, match="HTML page") as ei:
        fetch_release("aariz", dest, url=url, known_hash=None, settings=FetchSettings(cache_dir=cache), progress=False)
    assert url in str(ei.value)
    assert_nothing_partial(dest)
    assert list(cache.iterdir()) == []


def test_http_404_names_url(server, tmp_path, cache):
    url = server.url("/missing.zip")
    with pytest.raises(DownloadError, match="HTTP 404") as ei:
        fetch_release("aariz", tmp_path / "d", url=url, settings=FetchSettings(cache_dir=cache), progress=False)
    assert url in str(ei.value)
    assert_nothing_partial(tmp_path / "d")


def test_checksum_mismatch(server, tmp_path, cache, aariz_zip):
    url = server.add("/a.zip", Route(body=aariz_zip))
    wrong = "md5:" + "0" * 32
    dest = tmp_path / "aariz"
    with pytest.raises(DownloadError, match="checksum mismatch") as ei:
        fetch_release("aariz", dest, url=url, known_hash=wrong, settings=FetchSettings(cache_dir=cache), progress=False)
    assert url in str(ei.value) and hashlib.md5(aariz_zip).hexdigest() in str(ei.value)
    assert_nothing_partial(dest)
    assert list(cache.iterdir()) == []  # neither the file nor a .part is kept


def test_release_default_checksum_applies_to_a_mirror(server, tmp_path, cache, aariz_zip):
    url = server.add("/mirror/Aariz.zip", Route(body=aariz_zip))
    # the whole (tiny) file arrived, but it is not the 2,098,209,792-byte release
    with pytest.raises(DownloadError, match="size mismatch.*2098209792") as ei:
        fetch_release("aariz", tmp_path / "d", url=url, settings=FetchSettings(cache_dir=cache), progress=False)
    assert url in str(ei.value)
    assert_nothing_partial(tmp_path / "d")
    assert list(cache.iterdir()) == []


def test_wrong_layout(server, tmp_path, cache):
    body = make_zip(aariz_members(root="aariz_v2", splits=("Train", "Valid")))
    url = server.add("/a.zip", Route(body=body))
    dest = tmp_path / "aariz"
    with pytest.raises(DownloadError, match="unexpected layout") as ei:
        fetch_release(
            "aariz", dest, url=url, known_hash=md5(body), settings=FetchSettings(cache_dir=cache), progress=False
        )
    msg = str(ei.value)
    assert url in msg and "Aariz/train/Cephalograms/" in msg and "aariz_v2/" in msg
    assert_nothing_partial(dest)


def test_layout_empty_split_folder(tmp_path):
    m = aariz_members()
    m = {k: v for k, v in m.items() if not k.startswith("Aariz/test/Cephalograms/")}
    m["Aariz/test/Cephalograms/"] = b""
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(make_zip(m))
    with pytest.raises(DownloadError, match=r"Aariz/test/Cephalograms/ \(empty\)"):
        fetch_release("aariz", tmp_path / "d", archive=arc, known_hash=md5(arc.read_bytes()), progress=False)
    assert_nothing_partial(tmp_path / "d")


def test_truncated_archive_on_disk(tmp_path, aariz_zip):
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(aariz_zip[: len(aariz_zip) // 2])
    dest = tmp_path / "d"
    with pytest.raises(DownloadError, match="corrupt or truncated zip") as ei:
        fetch_release("aariz", dest, archive=arc, known_hash=md5(arc.read_bytes()), progress=False)
    assert str(arc) in str(ei.value)
    assert_nothing_partial(dest)


def test_local_archive_checked_against_release_md5(tmp_path, aariz_zip):
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(aariz_zip)
    with pytest.raises(DownloadError, match="checksum mismatch: expected md5:e0bd645bca6759abdae4f199d841bda6"):
        fetch_release("aariz", tmp_path / "d", archive=arc, progress=False)
    fetch_release(
        "aariz", tmp_path / "d", archive=arc, known_hash=md5(aariz_zip).upper().replace("MD5", "md5"), progress=False
    )
    assert (tmp_path / "d/Aariz/Readme.txt").is_file()


def test_disk_full_while_unpacking(monkeypatch, tmp_path, aariz_zip):
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(aariz_zip)
    calls = {"n": 0}
    real = archive._write_member

    def full_disk(src, dst):
        calls["n"] += 1
        if calls["n"] == 5:  # some files already written, this one half-written
            with open(dst, "wb") as f:
                f.write(src.read(3))
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(archive, "_write_member", full_disk)
    dest = tmp_path / "out" / "aariz"
    with pytest.raises(DownloadError, match="disk full") as ei:
        fetch_release("aariz", dest, archive=arc, known_hash=md5(aariz_zip), progress=False)
    assert str(arc) in str(ei.value)
    assert calls["n"] == 5
    assert_nothing_partial(dest)


def test_not_enough_space_checked_before_unpacking(monkeypatch, tmp_path, aariz_zip):
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(aariz_zip)
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(DownloadError, match="not enough disk space"):
        fetch_release("aariz", tmp_path / "d", archive=arc, known_hash=md5(aariz_zip), progress=False)
    assert_nothing_partial(tmp_path / "d")


def test_unsafe_member_path_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("../../evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    arc = tmp_path / "evil.tar"
    arc.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="unsafe member path"):
        fetch_release("aariz", tmp_path / "x" / "d", archive=arc, known_hash=sha256(buf.getvalue()), progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert_nothing_partial(tmp_path / "x" / "d")


def test_not_an_archive_on_disk(tmp_path):
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(b"<html><body>Access denied</body></html>")
    with pytest.raises(DownloadError, match="HTML page, not a zip/tar/rar archive") as ei:
        fetch_release("aariz", tmp_path / "d", archive=arc, known_hash=md5(arc.read_bytes()), progress=False)
    assert str(arc) in str(ei.value)


# ----------------------------------------------------------------------------- dest handling, folder source


def test_occupied_destination_needs_force(tmp_path, aariz_zip):
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(aariz_zip)
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError, match="not empty"):
        fetch_release("aariz", dest, archive=arc, known_hash=md5(aariz_zip), progress=False)
    assert (dest / "keep.txt").read_text() == "mine"
    fetch_release("aariz", dest, archive=arc, known_hash=md5(aariz_zip), progress=False, force=True)
    assert not (dest / "keep.txt").exists() and (dest / "Aariz").is_dir()


def test_failed_refetch_keeps_previous_release(tmp_path, aariz_zip):
    arc = tmp_path / "Aariz.zip"
    arc.write_bytes(aariz_zip)
    dest = tmp_path / "d"
    fetch_release("aariz", dest, archive=arc, known_hash=md5(aariz_zip), progress=False)
    before = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"Other/x.txt": b"1"}))
    with pytest.raises(DownloadError, match="unexpected layout"):
        fetch_release("aariz", dest, archive=bad, known_hash=md5(bad.read_bytes()), progress=False, force=True)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == before


def test_folder_source_copy_and_link(tmp_path):
    src = tmp_path / "src"
    for name, data in aariz_members().items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    for link in (False, True):
        dest = tmp_path / f"d{int(link)}"
        fetch_release("aariz", dest, folder=src, settings=FetchSettings(link=link), progress=False)
        f = dest / "Aariz/train/Cephalograms/ctrain01.png"
        assert f.read_bytes() == (src / "Aariz/train/Cephalograms/ctrain01.png").read_bytes()
        assert (f.stat().st_ino == (src / "Aariz/train/Cephalograms/ctrain01.png").stat().st_ino) == link
    (src / "Aariz/cephalogram_machine_mappings.csv").unlink()
    with pytest.raises(DownloadError, match="cephalogram_machine_mappings.csv") as ei:
        fetch_release("aariz", tmp_path / "d2", folder=src, progress=False)
    assert str(src) in str(ei.value)
    assert_nothing_partial(tmp_path / "d2")


def test_folder_source_is_the_release_folder_itself(tmp_path, monkeypatch):
    """`--from-folder .../Aariz` (the folder a user unpacked) works like its parent; a missing CSV or
    split is named, and found before a single file is copied."""
    from cephalo.datasets.fetch import release as release_mod

    src = tmp_path / "mine"
    for name, data in aariz_members().items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    dest = tmp_path / "raw" / "aariz"
    fetch_release("aariz", dest, folder=src / "Aariz", progress=False)
    assert (dest / "Aariz/train/Cephalograms/ctrain01.png").is_file()
    copied = []
    monkeypatch.setattr(release_mod, "copy_tree", lambda *a, **k: copied.append(a))
    (src / "Aariz/cephalogram_machine_mappings.csv").unlink()
    with pytest.raises(DownloadError, match="missing Aariz/cephalogram_machine_mappings.csv;"):
        fetch_release("aariz", tmp_path / "d2", folder=src / "Aariz", progress=False)
    shutil.rmtree(src / "Aariz/valid")
    with pytest.raises(DownloadError, match="missing Aariz/valid/"):
        fetch_release("aariz", tmp_path / "d3", folder=src / "Aariz", progress=False)
    assert copied == []
    assert_nothing_partial(tmp_path / "d2")


def test_one_source_only(tmp_path):
    with pytest.raises(ConfigError, match="at most one source"):
        fetch_release("aariz", tmp_path / "d", url="http://127.0.0.1:1/x", folder=tmp_path)
    with pytest.raises(ConfigError, match="checksum must look like"):
        fetch_release("aariz", tmp_path / "d", folder=tmp_path, known_hash="md5:xyz")


# ----------------------------------------------------------------------------- ISBI 2015: nested archives, no checksum


def isbi_bulk_zip() -> bytes:
    """figshare-style bulk zip holding per-folder archives, one with a wrapper level."""
    raw = {}
    for split, ids in (("TrainingData", (1, 2)), ("Test1Data", (151,)), ("Test2Data", (301,))):
        for i in ids:
            raw[f"RawImage/RawImage/{split}/{i:03d}.bmp"] = b"BM" + bytes(30)
    ann = {
        f"AnnotationsByMD/{who}/{i:03d}.txt": b"1,2\n" * 19
        for who in ("400_senior", "400_junior")
        for i in (1, 2, 151, 301)
    }
    return make_zip({"RawImage.zip": make_zip(raw), "AnnotationsByMD.tar.gz": make_targz(ann)})


def test_isbi_nested_archives_wrapper_and_missing_checksum_warning(server, tmp_path, cache):
    body = isbi_bulk_zip()
    url = server.add("/ndownloader/articles/3471833", Route(body=body))
    dest = tmp_path / "isbi"
    with pytest.warns(MissingChecksumWarning, match=hashlib.sha256(body).hexdigest()):
        fetch_release(
            "isbi2015", dest, url=url + "?private_link=abc", settings=FetchSettings(cache_dir=cache), progress=False
        )
    assert (dest / "RawImage/TrainingData/001.bmp").is_file()  # wrapper level collapsed
    assert (dest / "AnnotationsByMD/400_senior/151.txt").is_file()
    assert not (dest / "RawImage.zip").exists() and not (dest / "AnnotationsByMD.tar.gz").exists()
    prov = json.loads((dest / PROVENANCE_FILE).read_text())
    assert prov["nested_archives"] == ["AnnotationsByMD.tar.gz", "RawImage.zip"]
    assert prov["missing_recommended"] == []

    # pinned checksum: no warning; wrong pin: mismatch
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingChecksumWarning)
        fetch_release(
            "isbi2015",
            tmp_path / "isbi2",
            url=url,
            known_hash=sha256(body),
            settings=FetchSettings(cache_dir=cache),
            progress=False,
        )
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_release(
            "isbi2015",
            tmp_path / "isbi3",
            url=url + "?v=2",
            known_hash="sha256:" + "1" * 64,
            settings=FetchSettings(cache_dir=cache),
            progress=False,
        )


def test_isbi_shared_data_folder(shared_data, tmp_path):
    """The real ISBI copy in ../shared/data (400_mean only, no Test2Data) validates as a folder source."""
    dest = tmp_path / "isbi"
    with pytest.warns(UserWarning, match="Test2Data"):
        fetch_release(
            "isbi2015", dest, folder=shared_data / "isbi2015", settings=FetchSettings(link=True), progress=False
        )
    assert len(list((dest / "RawImage/TrainingData").iterdir())) == 150
    assert len(list((dest / "AnnotationsByMD/400_mean").glob("*.txt"))) == 300


# ----------------------------------------------------------------------------- RAR


def test_rar_messages(monkeypatch, tmp_path):
    # rarfile absent -> names the package and the system tools
    monkeypatch.setitem(__import__("sys").modules, "rarfile", None)
    with pytest.raises(DownloadError, match=r"'rarfile' is not installed.*'unrar', 'unar' or 'bsdtar'"):
        archive._import_rarfile(tmp_path / "RawImage.rar")
    monkeypatch.undo()
    rarfile = pytest.importorskip("rarfile")

    def no_tool():
        raise rarfile.RarCannotExec("no tool")

    monkeypatch.setattr(rarfile, "tool_setup", no_tool)
    with pytest.raises(DownloadError, match=r"no RAR tool found.*'unrar', 'unar' or 'bsdtar'") as ei:
        archive._require_rar_tool(rarfile, tmp_path / "RawImage.rar")
    assert "RawImage.rar" in str(ei.value)


def make_rar(files: dict[str, bytes], method: int = 0x30) -> bytes:
    """A minimal RAR 1.5-4.x archive (RAR technote: marker, main, file, end headers).

    ``method=0x30`` stores the data (readable without any tool); any other method marks
    the entries compressed, so unpacking needs unrar/unar/bsdtar (the payload is zeros).
    """
    import struct
    import zlib

    def hdr(htype: int, flags: int, body: bytes) -> bytes:
        raw = struct.pack("<BHH", htype, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(raw) & 0xFFFF) + raw

    out = bytearray(b"Rar!\x1a\x07\x00") + hdr(0x73, 0, bytes(6))
    for name, data in files.items():
        n = name.encode()
        payload = data if method == 0x30 else bytes(len(data))
        body = struct.pack(
            "<IIBIIBBHI", len(payload), len(data), 3, zlib.crc32(data), 0x5A000000, 29, method, len(n), 0o100644 << 16
        )
        out += hdr(0x74, 0x8000, body + n) + payload
    out += hdr(0x7B, 0x4000, b"")
    return bytes(out)


def test_isbi_local_rar_archives(tmp_path):
    """The ISBI release's per-folder RARs, given as --archive files (stored entries: no tool needed)."""
    pytest.importorskip("rarfile")
    raw = tmp_path / "RawImage.rar"
    raw.write_bytes(
        make_rar(
            {
                f"RawImage/{s}/{i:03d}.bmp": b"BM" + bytes([i % 256]) * 9
                for s, i in (("TrainingData", 1), ("Test1Data", 151), ("Test2Data", 301))
            }
        )
    )
    ann = tmp_path / "AnnotationsByMD.rar"
    ann.write_bytes(make_rar({f"400_senior/{i:03d}.txt": b"5,6\n" * 19 for i in (1, 151, 301)}))
    dest = tmp_path / "isbi"
    hashes = {"RawImage.rar": sha256(raw.read_bytes()), "AnnotationsByMD.rar": sha256(ann.read_bytes())}
    # RawImage alone: the layout check names the missing annotations
    with pytest.raises(DownloadError, match="AnnotationsByMD/"):
        fetch_release("isbi2015", dest, archive=[raw], known_hash=hashes, progress=False)
    assert_nothing_partial(dest)
    # both, given separately; AnnotationsByMD.rar has no top folder of its own
    with pytest.warns(UserWarning, match="400_junior"):
        fetch_release("isbi2015", dest, archive=[raw, ann], known_hash=hashes, progress=False)
    assert (dest / "RawImage/Test2Data/301.bmp").read_bytes() == b"BM" + bytes([301 % 256]) * 9
    assert (dest / "AnnotationsByMD/400_senior/151.txt").read_text() == "5,6\n" * 19
    # the same two inside a figshare-style bulk zip
    bulk = tmp_path / "bulk.zip"
    bulk.write_bytes(make_zip({"RawImage.rar": raw.read_bytes(), "AnnotationsByMD.rar": ann.read_bytes()}))
    with pytest.warns(UserWarning, match="400_junior"):
        fetch_release(
            "isbi2015", tmp_path / "isbi_b", archive=bulk, known_hash=sha256(bulk.read_bytes()), progress=False
        )
    assert (tmp_path / "isbi_b/AnnotationsByMD/400_senior/151.txt").is_file()


def test_compressed_rar_without_tool(monkeypatch, tmp_path):
    rarfile = pytest.importorskip("rarfile")

    def no_tool():
        raise rarfile.RarCannotExec("Cannot find working tool")

    monkeypatch.setattr(rarfile, "tool_setup", no_tool)
    arc = tmp_path / "RawImage.rar"
    arc.write_bytes(make_rar({"RawImage/TrainingData/001.bmp": b"BM" + bytes(40)}, method=0x33))
    dest = tmp_path / "isbi"
    with pytest.raises(DownloadError, match=r"no RAR tool found.*'unrar', 'unar' or 'bsdtar'") as ei:
        fetch_release("isbi2015", dest, archive=arc, known_hash=sha256(arc.read_bytes()), progress=False)
    assert str(arc) in str(ei.value)
    assert_nothing_partial(dest)


def test_corrupt_rar(tmp_path):
    pytest.importorskip("rarfile")
    arc = tmp_path / "RawImage.rar"
    arc.write_bytes(b"Rar!\x1a\x07\x00" + b"\x00" * 40)
    with pytest.raises(DownloadError, match="RAR archive holds no files|corrupt or truncated RAR") as ei:
        fetch_release(
            "isbi2015",
            tmp_path / "d",
            archive=[arc],
            known_hash={"RawImage.rar": sha256(arc.read_bytes())},
            progress=False,
        )
    assert str(arc) in str(ei.value)
    assert_nothing_partial(tmp_path / "d")


# ----------------------------------------------------------------------------- CLI


def _params(tmp_path, text: str) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_cli_download_mirror_and_errors(server, tmp_path, cache, aariz_zip):
    from cephalo.cli import main

    url = server.add("/a.zip", Route(body=aariz_zip))
    params = _params(
        tmp_path,
        f"""
data:
  datasets:
    aariz:
      download:
        known_hash: "{md5(aariz_zip)}"
        cache_dir: "{cache}"
        keep_archive: true
        timeout_s: 20
""",
    )
    runner = CliRunner()
    out = tmp_path / "raw" / "aariz"
    r = runner.invoke(
        main, ["download", "aariz", "--out", str(out), "--mirror", url, "--params", str(params), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    assert (out / "Aariz/train/Cephalograms").is_dir()
    assert str(out) in r.output

    # bad input: one-line error, exit 1, nothing written
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"<html>nope</html>")
    r = runner.invoke(
        main, ["download", "aariz", "--out", str(tmp_path / "o2"), "--archive", str(bad), "--params", str(params)]
    )
    assert r.exit_code != 0 and isinstance(r.exception, DownloadError)
    assert_nothing_partial(tmp_path / "o2")


def test_cli_download_one_line_exit_1(tmp_path, aariz_zip):
    import subprocess
    import sys

    bad = tmp_path / "Aariz.zip"
    bad.write_bytes(aariz_zip)
    params = _params(tmp_path, "data: {}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cephalo.cli import run; run()",
            "download",
            "aariz",
            "--out",
            str(tmp_path / "o"),
            "--archive",
            str(bad),
            "--params",
            str(params),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("cephalo: error:")]
    assert len(lines) == 1 and "checksum mismatch" in lines[0] and str(bad) in lines[0]
    assert_nothing_partial(tmp_path / "o")


def test_cli_download_unknown_dataset(tmp_path):
    from cephalo.cli import main

    params = _params(tmp_path, "data: {}\n")
    r = CliRunner().invoke(main, ["download", "nope", "--out", str(tmp_path / "o"), "--params", str(params)])
    assert r.exit_code == 2 and "aariz" in r.output


def test_cli_download_isbi_archives_warn_once_per_line(tmp_path):
    import subprocess
    import sys

    raw = tmp_path / "RawImage.zip"
    raw.write_bytes(
        make_zip({f"RawImage/{s}/{i:03d}.bmp": b"BM" + bytes(8) for s, i in (("TrainingData", 1), ("Test1Data", 151))})
    )
    ann = tmp_path / "AnnotationsByMD.tar.gz"
    ann.write_bytes(make_targz({"AnnotationsByMD/400_senior/001.txt": b"1,1\n" * 19}))
    params = _params(tmp_path, "data: {}\n")
    out = tmp_path / "raw" / "isbi2015"
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cephalo.cli import run; run()",
            "download",
            "isbi2015",
            "--out",
            str(out),
            "--archive",
            str(raw),
            "--archive",
            str(ann),
            "--params",
            str(params),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if ln.startswith("cephalo: warning:")]
    assert len(warns) == 3 and len(r.stderr.splitlines()) == 3
    assert f"known_hash: {{RawImage.zip: {sha256(raw.read_bytes())}}}" in warns[0]
    assert "Test2Data" in warns[2]
    assert (out / "AnnotationsByMD/400_senior/001.txt").is_file()


def test_relative_destination_and_cache_as_the_pipeline_passes_them(server, tmp_path, monkeypatch, aariz_zip):
    """`cephalo download aariz --out resources/raw/aariz` runs with a relative --out (pooch's
    extractors would otherwise unpack relative to the archive's own folder)."""
    monkeypatch.chdir(tmp_path)
    url = server.add("/files/Aariz.zip", Route(body=aariz_zip))
    out = fetch_release(
        "aariz",
        "resources/raw/aariz",
        url=url,
        known_hash=sha256(aariz_zip),
        settings=FetchSettings(cache_dir="cache"),
        progress=False,
    )
    assert out == tmp_path / "resources" / "raw" / "aariz"
    assert (out / "Aariz" / "cephalogram_machine_mappings.csv").is_file()
    assert list((tmp_path / "cache").iterdir())  # the download was cached where asked

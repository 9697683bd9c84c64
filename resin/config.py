"""Configuration models (pydantic, ``extra="forbid"``), saved beside every checkpoint/model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneratorConfig(_Strict):
    """Architecture of the super-resolution generator F (a residual 3D U-Net)."""

    features: list[int] = Field(default_factory=lambda: [64, 128, 256], min_length=1, max_length=5)
    """Channels per U-Net level; len(features) - 1 poolings."""
    in_channels: int = Field(1, ge=1, le=4)
    """Image channels (1 for fluorescence volumes)."""
    residual: bool = True
    """Global residual: output = input + correction."""

    @field_validator("features")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(f <= 0 for f in v):
            raise ValueError("every feature count must be positive")
        return v

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.features) - 1)


class NormalizationConfig(_Strict):
    """Global percentile normalization: x -> (x - p_low) / (p_high - p_low), once per volume."""

    low_percentile: float = Field(0.5, ge=0.0, lt=50.0)
    """Lower percentile of the whole volume mapped to 0."""
    high_percentile: float = Field(99.9, gt=50.0, le=100.0)
    """Upper percentile of the whole volume mapped to 1."""

"""The backend's settings, read once from the environment (docs/architecture.md lists them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# ConfigError is re-exported: callers catch it from here.
from services.common.settings import ConfigError, read_number

__all__ = ["BackendConfig", "ConfigError"]


@dataclass(frozen=True)
class BackendConfig:
    max_upload_mb: float = 200.0
    max_image_pixels: int = 200_000_000
    default_pixel_size_um: float = 0.843
    max_images_per_job: int = 100
    default_model: str = "classical"
    retry_after_s: int = 30
    access_flush_s: float = 10.0

    @property
    def max_content_length(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BackendConfig:
        env = os.environ if env is None else env
        return cls(
            max_upload_mb=read_number(env, "MAX_UPLOAD_MB", cls.max_upload_mb, 0.001),
            max_image_pixels=int(read_number(env, "MAX_IMAGE_PIXELS", cls.max_image_pixels, 1)),
            default_pixel_size_um=read_number(env, "DEFAULT_PIXEL_SIZE_UM", cls.default_pixel_size_um, 1e-6),
            max_images_per_job=int(read_number(env, "MAX_IMAGES_PER_JOB", cls.max_images_per_job, 1)),
            default_model=env.get("DEFAULT_MODEL") or cls.default_model,
            retry_after_s=int(read_number(env, "RETRY_AFTER_SECONDS", cls.retry_after_s, 1)),
            access_flush_s=read_number(env, "ACCESS_STATS_FLUSH_SECONDS", cls.access_flush_s, 0.1),
        )

"""Shared base for every spec model: strict, immutable, and hashable by content."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are errors (a typo must not silently change a benchmark); models are frozen after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON form: two specs that mean the same thing hash the same."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

"""Errors the collector raises; each is a ``UserError`` printed by the CLI as one line."""

from __future__ import annotations

from maforecast.errors import UserError


class CollectorError(UserError):
    """Base class of the collector's user-facing errors."""


class UnknownRepoError(CollectorError):
    """The Hugging Face repository does not exist (or is private/gated without access)."""


class UnknownRevisionError(CollectorError):
    """A requested revision/step is not in the repository or checkpoint folder."""


class NoModelError(CollectorError):
    """A local path holds no loadable model (no config.json / weights)."""


class UnsupportedModelError(CollectorError):
    """Encoder-only, encoder-decoder or otherwise unsupported architecture."""


class EmptyProbeError(CollectorError):
    """The probe text tokenizes to nothing."""


class LayerOOMError(CollectorError):
    """Out of memory while running one decoder layer; the message names the layer."""


class NetworkUnavailableError(CollectorError):
    """A hub source was requested but the hub cannot be reached and nothing is cached."""


class UnknownSuiteError(CollectorError):
    """A ``--suite`` name that is not in the presets file."""

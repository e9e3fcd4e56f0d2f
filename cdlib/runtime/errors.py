"""Exception types of cdlib. Every message names the file, key or knob at fault."""


class CdlibError(Exception):
    """Base class of every error cdlib raises on purpose."""


class ConfigError(CdlibError, ValueError):
    """An unknown config key, a malformed override or a value of the wrong type or range."""


class DataError(CdlibError, ValueError):
    """A data set that cannot be built: missing root, wrong layout, missing split files, ..."""


class VideoError(DataError):
    """One video that cannot be used: unreadable, truncated, empty or shorter than one clip.

    ``path`` names the file, ``reason`` says what is wrong with it.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ArtifactError(CdlibError):
    """An artifact that exists but cannot be trusted (damaged, truncated or mismatched)."""


class WeightsError(ConfigError):
    """Pretrained weights that cannot be used: an unknown name, a missing or damaged file, a file that does not fit.

    The message names the weights and, for a missing file, the file to put where.
    """

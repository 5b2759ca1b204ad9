"""Exception types of the kit: one per family, each message names the file or parameter at fault."""


class MetagenError(Exception):
    """Base class of every error the kit raises on purpose."""


class DataError(MetagenError, ValueError):
    """A file, folder or data set is missing, unreadable or not what was expected."""


class ConfigError(MetagenError, ValueError):
    """A profile, parameter or option has a value the kit does not accept."""


class ManifestError(DataError):
    """A built data set does not match the manifest committed beside it."""


class NotebookError(MetagenError, RuntimeError):
    """A notebook failed while the harness executed it."""


class MetaLearningError(MetagenError, RuntimeError):
    """Meta-training cannot go on: a non-finite loss, or a module the chosen code path cannot run."""


class CheckpointError(MetagenError, ValueError):
    """A checkpoint is missing, damaged, or does not match the model or configuration it is loaded into."""

"""mft: a managed-file-transfer cluster administered from the terminal."""

__version__ = "0.1.0"

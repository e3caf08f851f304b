"""imgpipe: upload, validate, store and turn user images into web variants."""

__version__ = "0.1.0"

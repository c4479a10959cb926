__version__ = "21.0.8"
__version_suffix__ = ""

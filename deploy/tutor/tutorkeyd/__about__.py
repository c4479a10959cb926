__version__ = "0.1.0"

# The keyd-openedx release this plugin installs into the Open edX images by default
# (openedx/pyproject.toml; the tests check that they agree).
KEYD_OPENEDX_VERSION = "0.1.0"

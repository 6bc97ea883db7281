"""Settings for the test suite: the project's own, plus an app that plugs a kind and a
processor in from outside jobs/ and sheets/ (tests/plugin_app)."""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.plugin_app"]

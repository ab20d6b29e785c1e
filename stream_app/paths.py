"""Where the processor's files are: the data files it ships, and the folders it may write to.

The data files (the Avro contracts, the topics' declarations, the catalogue with the alert rules, the
API's OpenAPI document) live in the repository's top-level folders ``avro_schemas/``, ``topics/``,
``catalogue/`` and ``docs/``. ``stream_app/data`` links to them (symlinks, like ``stream_app/agents``)
and ``pyproject.toml`` lists them as package data, so a checkout (an editable install) reads the
repository's own files and a wheel carries copies of them. Both are found through
:mod:`importlib.resources`, never through a path relative to the repository.

Local state (Faust's working folder, the demo's log) goes in the checkout's ``.local/`` when the code
runs from a checkout, and otherwise in the user's state folder, ``~/.local/state/stream-app``: never in
an installed package's folder. The settings' defaults are built from these (``STREAM_APP_*`` override
them); this module reads no environment variable.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path


def _package_data() -> Path:
    root = resources.files("stream_app") / "data"
    if isinstance(root, Path):
        return root
    # e.g. imported from a zip archive: the files are not on disk, and the settings need paths
    raise ImportError(f"stream_app's data files must be files on disk; they are in {root}")


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "stream_app" / "data").is_dir():
        return root
    return None


PACKAGE_DATA = _package_data()
# The source tree this code runs from (an editable install, PYTHONPATH), or None when installed.
CHECKOUT = _checkout()
STATE_HOME = Path("~/.local/state/stream-app")


def data_file(*parts: str) -> Path:
    """A data file or folder shipped with the package (``data_file("catalogue", "rules.toml")``).

    In a checkout the links are resolved: the path is the repository's own file (``catalogue/...``),
    as error messages and the generated settings doc name it.
    """
    return PACKAGE_DATA.joinpath(*parts).resolve()


def state_dir(name: str) -> Path:
    """A folder for local state: ``.local/<name>`` of the checkout, or ``~/.local/state/stream-app/<name>``
    when installed. Not created here."""
    if CHECKOUT is not None:
        return CHECKOUT / ".local" / name
    try:
        return STATE_HOME.expanduser() / name
    except RuntimeError:  # no home folder: a temporary one, rather than the package's folder
        return Path(tempfile.gettempdir()) / "stream-app" / name

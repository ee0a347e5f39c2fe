"""Where the bot finds its own files (migrations, static assets, sample knowledge).

Always relative to the installed package, never to the working directory: systemd, containers and
cron start the bot elsewhere. A source checkout (an editable install, the tests) has them at the
repository's top level, beside the package; a wheel carries them in `answerbot_data/` beside it.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The directory `name` (e.g. "migrations") shipped with the bot."""
    for candidate in (_PACKAGE_DIR.parent / name, _PACKAGE_DIR.parent / "answerbot_data" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the bot's {name!r} directory is missing from its installation")

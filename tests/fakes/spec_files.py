"""Where the platforms' published API specs live for the tests.

`tests/specs/` is an unchanged copy of ../shared/specs/ (see its README for sources and licenses),
so a clone tests itself on any machine; `test_spec_files` checks the copy still matches the shared
one wherever that is present. A refresh is a plain file replacement.
"""

from __future__ import annotations

from pathlib import Path

SPECS_DIR = Path(__file__).resolve().parents[1] / "specs"
SHARED_SPECS_DIR = Path(__file__).resolve().parents[3] / "shared" / "specs"

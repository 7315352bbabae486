"""The plugins shipped in this repository's plugins/ folder, importable from their source trees for their physics
tests (tests/plugins/test_vlbi_install.py installs the VLBI plugin as a distribution and runs it end to end)."""
import sys
from pathlib import Path

VLBI_SRC = Path(__file__).resolve().parents[2] / "plugins" / "vlbi"
if str(VLBI_SRC) not in sys.path:
    sys.path.append(str(VLBI_SRC))

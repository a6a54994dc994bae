"""Where the repository's files are, for tests in any folder below ``tests/``."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

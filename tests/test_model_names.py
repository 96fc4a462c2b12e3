"""What a new user copies from the README, the config file, the docs and the examples names models that exist."""

from __future__ import annotations

import re
from pathlib import Path

from memory_implementations.providers.gemini_provider import DEFAULT_CHAT_MODEL as GEMINI_CHAT
from memory_implementations.providers.gemini_provider import DEFAULT_EMBEDDING_MODEL as GEMINI_EMBEDDING

ROOT = Path(__file__).resolve().parent.parent
# Gemini 1.0 / 1.5 / 2.0 models are retired by Google: a request naming them fails
RETIRED = re.compile(r"gemini-(?:1\.0|1\.5|2\.0|pro\b|pro-vision)[\w.-]*")


def _user_facing() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "config").iterdir()), *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "examples").glob("*.py"))
    return [f for f in files if f.is_file()]


def test_no_retired_gemini_model_is_named_where_users_copy_from():
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _user_facing()
        for match in RETIRED.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found, found


def test_the_documented_gemini_models_are_the_providers_defaults():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    default_toml = (ROOT / "config" / "default.toml").read_text(encoding="utf-8")
    for text in (readme, default_toml):
        assert f'"{GEMINI_CHAT}"' in text and f'"{GEMINI_EMBEDDING}"' in text
    assert GEMINI_CHAT in (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")

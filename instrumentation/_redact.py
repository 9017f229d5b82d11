"""Redaction of prompt and answer text, and the prompt hash.

Content is recorded only when capture is on, and then only through :func:`redact_text`,
which the collector also applies to content attributes that other SDKs send. Patterns are
compiled once at import: the decorator's hot path never compiles a regex.

``prompt_hash`` lets identical prompts group in the store without being readable: an
HMAC-SHA256 keyed with a per-installation secret, so nobody can confirm a guessed prompt
by hashing it themselves (a bare SHA-256 of a short prompt is a dictionary lookup away).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Final

__all__ = ["luhn_valid", "prompt_hash", "redact_text"]

logger = logging.getLogger("llmlens")

# Order matters: structured secrets first, so a JWT or key is not half-eaten by the
# phone-number pattern that would also match its digits.
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_BEARER: Final = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
_API_KEY: Final = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,})"  # Slack tokens
)
# key=..., "api_key": "...", token: ... ; keeps the name, drops the value.
_KEY_VALUE: Final = re.compile(
    r"(?i)\b((?:api[_-]?key|apikey|secret|token|access[_-]?token|password|passwd|pwd|auth)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{6,})"
)
_EMAIL: Final = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# 13-19 digits, optionally grouped by single spaces or dashes.
_CARD: Final = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_PHONE: Final = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,8}){1,4}(?!\w)"
)
_TRUNCATED: Final = "…[truncated]"


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string, as card numbers carry it.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    # Only Luhn-valid numbers are cards: order ids and timestamps of the same length stay.
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "[CARD]"
    return match.group(0)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    # Dates (2024-05-01), versions and small numbers are not phone numbers.
    if digits < 7 or digits > 15:
        return text
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) or ("." in text and "+" not in text and " " not in text):
        return text
    return "[PHONE]"


def redact_text(text: str, max_chars: int) -> str:
    """Replace personal data and secrets in ``text`` and cap it at ``max_chars`` characters.

    E-mail addresses, phone numbers, card numbers (Luhn-checked), API keys, bearer tokens,
    JWTs and ``key=value`` secrets become placeholders such as ``[EMAIL]``. The cap is
    applied before redaction as well (plus a margin), so a huge prompt costs bounded time.

    >>> redact_text("mail bob@example.com, card 4111 1111 1111 1111", 100)
    'mail [EMAIL], card [CARD]'
    """
    if not text:
        return text
    truncated = len(text) > max_chars
    if truncated:
        # A margin so a secret straddling the cut is still recognised and replaced whole.
        text = text[: max_chars + 64]
    text = _JWT.sub("[JWT]", text)
    text = _BEARER.sub("Bearer [TOKEN]", text)
    text = _API_KEY.sub("[API_KEY]", text)
    text = _KEY_VALUE.sub(lambda m: m.group(1) + "[REDACTED]", text)
    text = _EMAIL.sub("[EMAIL]", text)
    text = _CARD.sub(_card, text)
    text = _PHONE.sub(_phone, text)
    if truncated or len(text) > max_chars:
        text = text[:max_chars] + _TRUNCATED
    return text


# --- prompt hash ------------------------------------------------------------------------------
_secret_lock = threading.Lock()
_secret_cache: dict[str, bytes] = {}
_WS: Final = re.compile(r"\s+")


def _secret() -> bytes:
    env = os.environ.get("LLMLENS_HASH_SECRET")
    if env:
        return env.encode()
    home = Path(os.environ.get("LLMLENS_HOME") or Path.home() / ".llmlens")
    key = str(home)
    cached = _secret_cache.get(key)
    if cached is not None:
        return cached
    with _secret_lock:
        path = home / "secret"
        try:
            secret = path.read_bytes().strip()
        except FileNotFoundError:
            secret = b""
        if not secret:
            home.mkdir(parents=True, exist_ok=True)
            new = secrets.token_hex(32).encode()
            try:
                # O_EXCL: two processes racing to create it agree on the winner's secret.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(new)
                secret = new
            except FileExistsError:
                secret = path.read_bytes().strip()
        _secret_cache[key] = secret
        return secret


def normalize_prompt(text: str) -> str:
    """What makes two prompts "the same": whitespace runs collapsed, ends stripped."""
    return _WS.sub(" ", text).strip()


def prompt_hash(text: str) -> str:
    """HMAC-SHA256 (hex, first 32 chars) of the normalised prompt with the installation secret.

    The secret lives in ``$LLMLENS_HOME/secret`` (default ``~/.llmlens/secret``), created
    with mode 0600 on first use; ``LLMLENS_HASH_SECRET`` overrides it, so that several
    hosts can share one and their hashes group together.

    >>> prompt_hash("Hello  world") == prompt_hash(" Hello world ")
    True
    """
    digest = hmac.new(_secret(), normalize_prompt(text).encode("utf-8", "surrogatepass"), hashlib.sha256)
    return digest.hexdigest()[:32]

"""Redaction of prompt and answer text, and the prompt hash.

Content is recorded only when capture is on, and then only through :func:`redact_text`,
which the collector also applies to content attributes that other SDKs send. Patterns are
compiled once at import: the decorator's hot path never compiles a regex.

``prompt_hash`` lets identical prompts group in the store without being readable: an
HMAC-SHA256 keyed with a per-installation secret, so nobody can confirm a guessed prompt
by hashing it themselves (a bare SHA-256 of a short prompt is a dictionary lookup away).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Final

__all__ = ["luhn_valid", "prompt_hash", "redact_text", "secret_name"]

logger = logging.getLogger("llmlens")

# --- secrets by shape -------------------------------------------------------------------------
# Order matters: structured secrets first, so a JWT or key is not half-eaten by the
# phone-number pattern that would also match its digits, and a private key block goes
# whole before anything looks inside it.
_PEM: Final = re.compile(
    # A block cut off by the size cap has no END line: it goes to the end of the text.
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*)",
    re.DOTALL,
)
# scheme://user:password@host -> the password goes, the rest of the URL stays readable.
_URL_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,20}://[^\s:/@\"'<>]*):([^\s@/\"'<>]+)@")
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_AUTH_SCHEME: Final = re.compile(r"(?i)\b(bearer|basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9+/=])[A-Za-z0-9._~+/=-]{8,}")
_API_KEY: Final = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}"  # OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-), OpenRouter
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}"  # AWS access key ids
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|ya29\.[0-9A-Za-z_-]{20,}"  # Google OAuth access token
    r"|GOCSPX-[0-9A-Za-z_-]{20,}"  # Google OAuth client secret
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub tokens
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{16,}"  # Stripe
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|(?:gsk|xai|pplx|r8)[_-][A-Za-z0-9]{20,}"  # Groq, xAI, Perplexity, Replicate
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,})"  # SendGrid
)
_SLACK_WEBHOOK: Final = re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+")
# name = value, name: value, "name": "value", with the name of a secret anywhere in it
# (OPENAI_API_KEY, client_secret, x-api-key, AccountKey, db_password, auth_token...). Tried
# only where one of these words occurs: matching at every position of the text cost ~4x
# all the other patterns together.
_ASSIGNMENT_WORDS: Final = ("pass", "pwd", "secret", "token", "key", "credential", "auth", "sig", "sas",
                            "cookie", "dsn", "conn")
_ASSIGNMENT: Final = re.compile(
    r"(?P<name>[\w.-]+)"
    r"(?P<sep>\\?[\"']?[ \t]*(?:=>|:=|=|:)[ \t]*)"
    r"(?P<value>\\\"(?:[^\"\\]|\\[^\"])*\\\"|\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s\"',;&<>{}\[\]()]+)"
)
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
# What makes a name a secret's name, judged on its words (camelCase and separators split).
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS: Final = re.compile(r"[^a-z0-9]+")
_SECRET_WORDS: Final = frozenset({
    "pass", "password", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "apikey", "credential",
    "credentials", "auth", "authorization", "cookie", "sig", "signature", "sas", "dsn", "privatekey",
    "accesskey", "accountkey", "secretkey", "connstr", "connectionstring",
})
_SECRET_PAIRS: Final = frozenset({
    ("api", "key"), ("private", "key"), ("access", "key"), ("account", "key"), ("secret", "key"),
    ("session", "key"), ("master", "key"), ("signing", "key"), ("encryption", "key"), ("conn", "str"),
    ("connection", "string"),
})
# Inside a word run together (OPENAIAPIKEY, dbpassword).
_SECRET_PARTS: Final = ("password", "passwd", "secret", "apikey", "privatekey", "accesskey", "accountkey",
                        "credential", "signature", "authorization", "passphrase", "accesstoken", "authtoken",
                        "refreshtoken", "sessiontoken")
_NOT_A_SECRET_VALUE: Final = frozenset({
    "name", "type", "count", "file", "path", "url", "length", "len", "size", "limit", "prefix", "version",
    "usage", "field", "header", "policy", "ttl", "expiry", "expires", "rotation", "hint", "label", "required",
})
_SCHEMES: Final = frozenset({"bearer", "basic", "digest", "none", "null", "true", "false"})
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


def _words(name: str) -> tuple[str, ...]:
    return tuple(w for w in _SEPARATORS.split(_CAMEL.sub("_", name).lower()) if w)


@functools.lru_cache(maxsize=1024)
def secret_name(name: str) -> bool:
    """Whether ``name`` (an identifier, a header, a JSON key) names a secret.

    >>> secret_name("AZURE_OPENAI_API_KEY"), secret_name("clientSecret"), secret_name("max_tokens")
    (True, True, False)
    """
    words = _words(name)
    if not words or words[-1] in _NOT_A_SECRET_VALUE:
        return False  # password_file, token_count, SharedAccessKeyName: about a secret, not one
    if any(word in _SECRET_WORDS for word in words):
        return True
    if any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words)):
        return True
    joined = "".join(words)
    return any(part in joined for part in _SECRET_PARTS)


def _redacted_value(match: re.Match[str]) -> str | None:
    """The value's replacement when ``match`` assigns a secret, else None."""
    value = match.group("value")
    inner = value.strip("\\\"'")
    if (len(inner) < 3 or inner.lower() in _SCHEMES or (inner.startswith("[") and inner.endswith("]"))
            or not secret_name(match.group("name"))):
        return None
    quote = value[: len(value) - len(value.lstrip("\\\"'"))]  # keep the quoting (JSON, escaped JSON)
    return quote + "[REDACTED]" + quote


def _redact_assignments(text: str) -> str:
    lowered = text.lower()
    starts: set[int] = set()
    for word in _ASSIGNMENT_WORDS:
        at = lowered.find(word)
        while at != -1:
            start = at
            while start > 0 and text[start - 1] in _NAME_CHARS:  # back to the start of the name
                start -= 1
            starts.add(start)
            at = lowered.find(word, at + len(word))
    if not starts:
        return text
    out: list[str] = []
    done = 0
    for start in sorted(starts):
        if start < done:
            continue
        match = _ASSIGNMENT.match(text, start)
        if match is None:
            continue
        replacement = _redacted_value(match)
        if replacement is not None:
            out.append(text[done:match.start("value")])
            out.append(replacement)
            done = match.end("value")
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def redact_text(text: str, max_chars: int) -> str:
    """Replace personal data and secrets in ``text`` and cap it at ``max_chars`` characters.

    E-mail addresses, phone numbers, card numbers (Luhn-checked), API keys and tokens by
    their shape (OpenAI, Anthropic, AWS, Google, GitHub, GitLab, Slack, Stripe, Hugging
    Face, ...), JWTs, bearer and basic credentials, PEM private keys, passwords in URLs
    and the value of anything *named* like a secret (``OPENAI_API_KEY=...``,
    ``"client_secret": "..."``, ``x-api-key: ...``, ``AccountKey=...;``) become
    placeholders such as ``[EMAIL]`` or ``[REDACTED]``. The cap is
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
    if "PRIVATE KEY" in text:
        text = _PEM.sub("[PRIVATE_KEY]", text)
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1:[REDACTED]@", text)
        text = _SLACK_WEBHOOK.sub("[WEBHOOK_URL]", text)
    text = _JWT.sub("[JWT]", text)
    text = _AUTH_SCHEME.sub(r"\1 [TOKEN]", text)
    text = _API_KEY.sub("[API_KEY]", text)
    text = _redact_assignments(text)
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
# How long a reader waits for the bytes of a secret file another process has just created
# (an older llmlens created the file first and wrote it next).
_READ_PATIENCE: Final = 2.0


def _read_secret(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        return b""


def _publish_secret(home: Path, path: Path) -> None:
    """Create ``path`` with a new secret unless it exists; it is never visible half-written.

    The secret is written and fsynced under a private name, then hard-linked to ``path``:
    ``link`` fails when ``path`` exists, so of processes racing on a fresh home the first
    one wins and all read its secret, complete.
    """
    home.mkdir(parents=True, exist_ok=True)
    new = secrets.token_hex(32).encode()
    tmp = home / f".secret-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(new)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: exclusive create, readers wait for the bytes
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd, "wb") as handle:
                handle.write(new)
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        tmp.unlink(missing_ok=True)


def _secret() -> bytes | None:
    env = os.environ.get("LLMLENS_HASH_SECRET")
    if env:
        return env.encode()
    home = Path(os.environ.get("LLMLENS_HOME") or Path.home() / ".llmlens")
    key = str(home)
    cached = _secret_cache.get(key)
    if cached is not None:
        return cached or None
    with _secret_lock:
        path = home / "secret"
        secret = _read_secret(path)
        if not secret:
            try:
                if not path.exists():
                    _publish_secret(home, path)
            except OSError:
                logger.warning("llmlens: cannot create the prompt-hash secret in %s", home, exc_info=True)
            secret = _read_secret(path)
            deadline = time.monotonic() + _READ_PATIENCE
            while not secret and time.monotonic() < deadline:
                time.sleep(0.01)
                secret = _read_secret(path)
        if not secret:
            # Never hash with an empty key: such hashes would not group with anyone's and a
            # guessed prompt could be confirmed by hashing it.
            logger.warning("llmlens: the prompt-hash secret %s is empty; prompt hashes are not recorded", path)
        _secret_cache[key] = secret
        return secret or None


def normalize_prompt(text: str) -> str:
    """What makes two prompts "the same": whitespace runs collapsed, ends stripped."""
    return _WS.sub(" ", text).strip()


def prompt_hash(text: str) -> str | None:
    """HMAC-SHA256 (hex, first 32 chars) of the normalised prompt with the installation secret.

    The secret lives in ``$LLMLENS_HOME/secret`` (default ``~/.llmlens/secret``), created
    with mode 0600 on first use; ``LLMLENS_HASH_SECRET`` overrides it, so that several
    hosts can share one and their hashes group together. None when no secret can be had
    (an unwritable home, an empty secret file): no hash rather than a guessable one.

    >>> prompt_hash("Hello  world") == prompt_hash(" Hello world ")
    True
    """
    key = _secret()
    if key is None:
        return None
    digest = hmac.new(key, normalize_prompt(text).encode("utf-8", "surrogatepass"), hashlib.sha256)
    return digest.hexdigest()[:32]

"""Redaction against a corpus of real-world secret shapes, and text that must come through intact.

Every secret here is fake but shaped like the real thing (prefix, alphabet, length), built
at run time so the source holds no secret-looking literal.
"""

from __future__ import annotations

import base64
import json
import random
import string

import pytest

from llmlens._redact import redact_text, secret_name

_rng = random.Random(9)
ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"


def fake(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def pem(kind: str) -> str:
    label = f"{kind} PRIVATE KEY".strip()
    body = "\n".join(fake(B64, 64) for _ in range(6))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return part({"alg": "RS256", "typ": "JWT"}) + "." + part({"sub": "1234567890", "exp": 1900000000}) + "." + fake(
        ALNUM + "-_", 86)


GCP_KEY = pem("")
GCP_KEY_ID = fake(HEX, 40)
RSA_KEY = pem("RSA")
SAS_SIG = fake(B64, 43) + "="
BASIC = base64.b64encode(b"deploy:" + fake(ALNUM, 16).encode()).decode()

# (what the text looks like, the secret values that must not survive)
CORPUS: list[tuple[str, list[str]]] = []


def case(template: str, *secrets: str) -> None:
    CORPUS.append((template.format(*secrets), list(secrets)))


def raw(text: str, *secrets: str) -> None:
    CORPUS.append((text, list(secrets)))


case("client = OpenAI(api_key='{}')", "sk-" + fake(ALNUM, 48))
case("OPENAI_API_KEY={}", "sk-proj-" + fake(ALNUM + "-_", 120))
case("key: {}", "sk-svcacct-" + fake(ALNUM + "-_", 80))
case("anthropic key {} in the log", "sk-ant-api03-" + fake(ALNUM + "-_", 93) + "AA")
case("aws_access_key_id = {}", "AKIA" + fake(UPPER.replace("0", ""), 16))
case("[default]\naws_secret_access_key = {}\nregion = eu-west-1", fake(B64, 40))
case('{{"AccessKeyId": "{}", "SecretAccessKey": "{}", "SessionToken": "{}"}}',
     "ASIA" + fake(UPPER, 16), fake(B64, 40), fake(B64, 300))
case("export AWS_SESSION_TOKEN={}", fake(B64, 200))
case("https://maps.googleapis.com/maps/api/geocode/json?address=x&key={}", "AIza" + fake(ALNUM + "-_", 35))
raw(json.dumps({"type": "service_account", "project_id": "demo", "private_key_id": GCP_KEY_ID,
                "private_key": GCP_KEY + "\n", "client_email": "svc@demo.iam.gserviceaccount.com"}),
    GCP_KEY_ID, GCP_KEY)
case("DefaultEndpointsProtocol=https;AccountName=demoacct;AccountKey={};EndpointSuffix=core.windows.net",
     fake(B64, 86) + "==")
case("https://demoacct.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z"
     "&sig={}", SAS_SIG.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"))
case("AZURE_OPENAI_API_KEY={}", fake(HEX, 32))
case("Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
     "SharedAccessKey={}", fake(B64, 43) + "=")
case("slack bot {}", "xoxb-" + fake(string.digits, 12) + "-" + fake(string.digits, 13) + "-" + fake(ALNUM, 24))
case("SLACK_USER_TOKEN: {}", "xoxp-" + fake(string.digits, 12) + "-" + fake(string.digits, 12) + "-"
     + fake(string.digits, 13) + "-" + fake(HEX, 32))
case("post to https://hooks.slack.com/services/{}",
     "T" + fake(UPPER, 8) + "/B" + fake(UPPER, 10) + "/" + fake(ALNUM, 24))
case("git remote set-url origin https://{}@github.com/org/repo.git", "ghp_" + fake(ALNUM, 36))
case("GITHUB_TOKEN={}", "github_pat_" + fake(ALNUM, 22) + "_" + fake(ALNUM, 59))
case("stripe.api_key = \"{}\"", "sk_live_" + fake(ALNUM, 99))
case("restricted key {}", "rk_live_" + fake(ALNUM, 99))
case("Cookie: session={}", jwt())
case("id token {} expires soon", jwt())
case("key file:\n{}\n", RSA_KEY)
case("{}", pem("OPENSSH"))
case("{}", pem("EC"))
case("DATABASE_URL=postgresql://app:{}@db.internal:5432/app", "pw")
case("engine = create_engine('postgresql+psycopg://llmlens:{}@10.0.0.5/llmlens')", fake(ALNUM, 20))
case("mysql://root:{}@127.0.0.1:3306/shop", fake(ALNUM, 12))
case("mongodb+srv://admin:{}@cluster0.abcde.mongodb.net/?retryWrites=true", fake(ALNUM, 16))
case("REDIS_URL=redis://:{}@cache:6379/0", fake(ALNUM, 24))
case("curl https://deploy:{}@example.com/hook", fake(ALNUM, 14))
case("Authorization: Bearer {}", fake(ALNUM + "._-", 40))
case("Authorization: Basic {}", BASIC)
case("x-api-key: {}", fake(ALNUM, 40))
case("openai_api_key = '{}'", fake(ALNUM, 20))
case("client_secret: {}", fake(ALNUM + "~._-", 34))
case('{{"db_password": "{}"}}', "correct horse battery staple")
case("private_key = {}", fake(HEX, 64))
case("auth_token={}&page=2", fake(HEX, 32))
case("DATABASE_PASSWORD='{}'", fake(ALNUM, 18))
case("psql with PGPASSWORD={}", fake(ALNUM, 12))
case("deploy --password={} --user ci", fake(ALNUM, 12))
case("const config = {{ apiKey: \"{}\", region: \"eu\" }}", fake(ALNUM, 32))
case("password: {}", "hunter2")
case("HF_TOKEN={}", "hf_" + fake(ALNUM, 34))
case("gitlab {}", "glpat-" + fake(ALNUM + "_-", 20))
case("google oauth {}", "ya29." + fake(ALNUM + "_-", 120))
NESTED_KEY = fake(ALNUM, 24)
raw(json.dumps({"messages": [{"role": "user", "content": json.dumps({"api_key": NESTED_KEY})}]}), NESTED_KEY)


@pytest.mark.parametrize(("text", "secrets"), CORPUS, ids=[f"{i:02d}" for i in range(len(CORPUS))])
def test_no_secret_of_the_corpus_survives_redaction(text: str, secrets: list[str]) -> None:
    redacted = redact_text(text, 100_000)
    for secret in secrets:
        assert secret not in redacted, redacted
        if "\n" in secret:  # a multi-line key: no line of its body either
            assert not [line for line in secret.splitlines()[1:-1] if line in redacted], redacted
        if "\n" in secret:  # the JSON-escaped form too
            assert secret.replace("\n", "\\n") not in redacted


def test_the_corpus_covers_thirty_real_world_shapes() -> None:
    assert len(CORPUS) >= 30


def test_names_and_url_structure_stay_readable() -> None:
    assert redact_text("DATABASE_URL=postgresql://app:pw@db.internal:5432/app", 1000) == (
        "DATABASE_URL=postgresql://app:[REDACTED]@db.internal:5432/app")
    assert redact_text('{"client_secret": "s3cr3t-value", "client_id": "web"}', 1000) == (
        '{"client_secret": "[REDACTED]", "client_id": "web"}')
    assert redact_text("OPENAI_API_KEY=sk-" + "a" * 40, 1000) == "OPENAI_API_KEY=[API_KEY]"
    assert redact_text("Authorization: Bearer abcdefghijk123", 1000) == "Authorization: Bearer [TOKEN]"


@pytest.mark.parametrize("text", [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n",
    "response = client.chat.completions.create(model='gpt-4o-mini', max_tokens=1024, temperature=0.2)",
    "usage: input_tokens: 1200, output_tokens: 300, token_count: 1500",
    "See https://docs.python.org/3/library/re.html#module-re for details.",
    "A basic understanding of the bearer bond market is required.",
    "The author wrote: passing the test was easy, and the design: minimal.",
    "password_file: /etc/app/password.txt",
    "SharedAccessKeyName=RootManageSharedAccessKey",
    "SELECT id, name FROM users WHERE id = 42;",
    "on 2024-05-01 at 10:30, v1.2.3, 42 items, order 4111111111111112",
    '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
    "git clone https://github.com/org/repo.git && cd repo",
    "Authorization is handled by the gateway; tokens are counted per request.",
    "passenger: Alice Smith, seat: 12A",
    "Use sklearn and sk-learn style names freely.",
])
def test_ordinary_text_comes_through_unchanged(text: str) -> None:
    assert redact_text(text, 100_000) == text


def test_secret_names_are_recognised_whatever_the_prefix_suffix_and_case() -> None:
    for name in ("openai_api_key", "OPENAI_API_KEY", "client_secret", "db_password", "AZURE_OPENAI_API_KEY",
                 "private_key", "x-api-key", "auth_token", "apiKey", "AccountKey", "SharedAccessSignature",
                 "PGPASSWORD", "--password", "aws_secret_access_key", "refreshToken", "sig", "Cookie"):
        assert secret_name(name), name
    for name in ("max_tokens", "token_count", "tokenizer", "author", "design", "passenger", "password_file",
                 "SharedAccessKeyName", "model", "keyboard"):
        assert not secret_name(name), name


"""The redaction rule set, as data: one `Rule` per secret format, each with its public source.

Written for this project from the providers' own documentation of their formats (the `source`
of each rule); no third-party rule file is copied. docs/redaction.md says why we keep our own
set rather than a maintained one, and how it is measured (`bench/redaction.py`).

A rule runs only when one of its `keywords` (lower case) occurs in the lower-cased line, so a
line with no candidate costs a few substring checks. What a match loses is the group named
`secret` (or `secret2`, …: the first one that took part), else the whole match; it becomes
`<redacted:KIND>`. `check` names a test in redact.py that the secret must also pass;
`unbroken` lets a line without a long run of word characters skip the rule. Rules run
in order; every pattern refuses to start on a placeholder, so redaction is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    """One secret format: where to look, what to match, what to call it, who documents it."""

    id: str
    kind: str
    keywords: tuple[str, ...]
    pattern: str
    source: str
    check: str = ""
    # The secret holds a run of 16+ letters, digits, `_` or `-`: the rule is skipped on
    # lines without one (two thirds of ordinary log lines), before its keywords are looked for.
    unbroken: bool = False


# Field names that say "secret" (the name ends in one of these, case-insensitive). A
# lookbehind after a possessive `[\w.-]++` keeps the scan linear.
_SECRET_NAME_END = (
    r"(?:(?<=token)|(?<=secret)|(?<=password)|(?<=passwd)|(?<=pwd)|(?<=passphrase)"
    r"|(?<=pass)(?<!bypass)(?<!compass)"
    r"|(?<=apikey)|(?<=api_key)|(?<=api-key)|(?<=accesskey)|(?<=access_key)"
    r"|(?<=secretkey)|(?<=secret_key)|(?<=privatekey)|(?<=private_key)|(?<=signing_key)"
    r"|(?<=encryption_key)|(?<=master_key)|(?<=session_key)|(?<=client_key)"
    r"|(?<=sessionid)|(?<=session_id)|(?<=sessid)|(?<=signature)|(?<=[?&]sig))"
)
# Only these names are trusted without `=` or quotes (`password: x`); `token: expired` stays.
_STRONG_NAME_END = (
    r"(?:(?<=password)|(?<=passwd)|(?<=pwd)|(?<=passphrase)|(?<=apikey)|(?<=api_key)"
    r"|(?<=api-key)|(?<=secretkey)|(?<=secret_key)|(?<=client_secret))"
)
# A value: quoted (the quotes stay), or up to a separator. Java's `Name{…}` object dumps
# (`token=Token{a64f992 …}`), JSON literals (`"pass": true`) and empty strings hold no secret.
_VALUE = (
    r"""(?!<redacted)(?![A-Z]\w*\{)(?!(?:true|false|null|none|nil)(?![\w.-]))"""
    r"""(?:(?P<vq>["'])(?!<redacted)(?P<secret>(?:\\.|(?!(?P=vq)).)++)(?P=vq)"""
    r"""|(?P<secret2>[^\s&,;"'}\]]++))"""
)
# A token68 credential (RFC 9110 §11.4); a plain lower-case word (`bearer token expired`,
# `Bearer realm="api"`) is prose or a parameter name, not a credential.
_TOKEN68 = r"""(?!<redacted)(?![a-z]+(?:[\s",;=]|$))(?P<secret>[A-Za-z0-9._~+/-]+=*)"""

RULES: tuple[Rule, ...] = (
    Rule(
        id="private-key",
        kind="private_key",
        keywords=("--",),
        pattern=(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)"
        ),
        source="RFC 7468 (textual encodings of PKIX/PKCS keys); RFC 4880 §6.2 (OpenPGP armor)",
    ),
    Rule(
        id="slack-webhook",
        kind="slack_webhook",
        keywords=("hooks",),
        pattern=r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+",
        source="https://api.slack.com/messaging/webhooks",
        unbroken=True,
    ),
    Rule(
        id="discord-webhook",
        kind="discord_webhook",
        keywords=("hooks",),
        pattern=r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+",
        source="https://discord.com/developers/docs/resources/webhook",
        unbroken=True,
    ),
    Rule(
        id="go-mysql-dsn",
        kind="credentials",
        keywords=("@",),
        pattern=(
            r"""(?<![^\s"'=(,;])(?!<redacted)(?P<secret>[^\s:@/"'=]+:[^\s"']*?)"""
            r"@(?=(?:tcp6?|udp6?|unix)\()"
        ),
        source="https://github.com/go-sql-driver/mysql#dsn-data-source-name",
    ),
    Rule(
        id="url-userinfo",
        kind="credentials",
        keywords=("://",),
        pattern=r"\b[A-Za-z][A-Za-z0-9+.-]*://(?!<redacted)(?P<secret>[^\s/:@]*:[^\s/@]*)@",
        source="RFC 3986 §3.2.1 (user:password in the authority; postgres, mysql, mongodb, "
        "redis, amqp and HTTP URLs all use it)",
    ),
    Rule(
        id="bearer",
        kind="token",
        keywords=("bearer",),
        pattern=r"(?i)\bbearer\s+" + _TOKEN68,
        source="RFC 6750 §2.1 (Bearer credentials)",
    ),
    Rule(
        id="authorization-header",
        kind="token",
        keywords=("authorization",),
        pattern=(
            r"""(?i)\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?"""
            r"(?:basic|digest|token|apikey|api-key|key|negotiate|ntlm|oauth|hoba|mutual"
            r"|scram-sha-(?:1|256)|vapid|ssws|geniekey|splunk|dsn|aws4-hmac-sha256)\s+"
            r"""(?!<redacted)(?![a-z]+(?:[\s",;=]|$))(?P<secret>[^\s"',;]+)"""
        ),
        source="RFC 9110 §11.6.2 (credentials = auth-scheme token68); IANA HTTP "
        "Authentication Scheme Registry; Elastic `ApiKey`, Okta `SSWS`, AWS SigV4 docs",
    ),
    Rule(
        id="secret-header",
        kind="secret",
        keywords=("token", "key"),
        pattern=(
            r"(?i)\b(?:x-api-key|api-key|x-auth-token|x-vault-token|private-token"
            r"|x-amz-security-token|x-goog-api-key|ocp-apim-subscription-key"
            r"""|x-shopify-access-token)["']?\s*[:=]\s*["']?"""
            r"""(?!<redacted)(?P<secret>[^\s"',;&]+)"""
        ),
        source="Vault (X-Vault-Token), GitLab (PRIVATE-TOKEN), AWS STS (X-Amz-Security-Token), "
        "Google (X-Goog-Api-Key), Azure APIM (Ocp-Apim-Subscription-Key), Shopify API docs",
    ),
    Rule(
        id="jwt",
        kind="jwt",
        keywords=("eyj",),
        pattern=r"\beyJ[A-Za-z0-9_-]{13,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
        source='RFC 7519 / RFC 7515 (base64url JOSE header `{"` = `eyJ`, three dot parts)',
        unbroken=True,
    ),
    Rule(
        id="aws-access-key-id",
        kind="aws_key_id",
        keywords=("akia", "asia", "abia", "acca"),
        pattern=r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
        source="https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html"
        "#identifiers-unique-ids",
        unbroken=True,
    ),
    Rule(
        id="github-token",
        kind="github_token",
        keywords=("gh",),
        pattern=r"\b(?:gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255})\b",
        source="https://docs.github.com/en/authentication/keeping-your-account-and-data-secure"
        "/about-authentication-to-github#githubs-token-formats",
        unbroken=True,
    ),
    Rule(
        id="gitlab-token",
        kind="gitlab_token",
        keywords=("gl",),
        pattern=r"\bgl(?:pat|dt|rt|ptt|ft|cbt|soat|imt)-[A-Za-z0-9_-]{20,}",
        source="https://docs.gitlab.com/ee/security/tokens/#token-prefixes",
        unbroken=True,
    ),
    Rule(
        id="slack-token",
        kind="slack_token",
        keywords=("xox", "xapp-"),
        pattern=r"\b(?:xox[abposre]-[A-Za-z0-9-]{11,}|xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)",
        source="https://api.slack.com/authentication/token-types",
        unbroken=True,
    ),
    Rule(
        id="stripe-key",
        kind="api_key",
        keywords=("_live_", "_test_", "whsec_"),
        pattern=r"\b(?:[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9+/=]{24,})",
        source="https://docs.stripe.com/keys ; https://docs.stripe.com/webhooks#verify-events",
        unbroken=True,
    ),
    Rule(
        id="google-api-key",
        kind="google_api_key",
        keywords=("aiza",),
        pattern=r"\bAIza[0-9A-Za-z_-]{35}",
        source="https://cloud.google.com/docs/authentication/api-keys",
        unbroken=True,
    ),
    Rule(
        id="google-oauth-token",
        kind="token",
        keywords=("ya29.", "1//0"),
        pattern=r"\b(?:ya29\.[0-9A-Za-z_-]{20,}|1//0[0-9A-Za-z_-]{30,})",
        source="https://developers.google.com/identity/protocols/oauth2 (ya29. access tokens, "
        "1// refresh tokens)",
        unbroken=True,
    ),
    Rule(
        id="vault-token",
        kind="vault_token",
        keywords=("hv",),
        pattern=r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}",
        source="https://developer.hashicorp.com/vault/docs/concepts/tokens#token-prefixes",
        unbroken=True,
    ),
    Rule(
        id="npm-token",
        kind="api_key",
        keywords=("npm_",),
        pattern=r"\bnpm_[A-Za-z0-9]{30,}",
        source="https://docs.npmjs.com/about-access-tokens",
        unbroken=True,
    ),
    Rule(
        id="pypi-token",
        kind="api_key",
        keywords=("pypi-",),
        pattern=r"\bpypi-AgE[A-Za-z0-9_-]{50,}",
        source="https://pypi.org/help/#apitoken",
        unbroken=True,
    ),
    Rule(
        id="sendgrid-key",
        kind="api_key",
        keywords=("sg.",),
        pattern=r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
        source="https://www.twilio.com/docs/sendgrid/ui/account-and-settings/api-keys",
        unbroken=True,
    ),
    Rule(
        id="openai-key",
        kind="api_key",
        keywords=("sk-",),
        pattern=r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{48}\b)",
        source="https://platform.openai.com/docs/api-reference/authentication",
        unbroken=True,
    ),
    Rule(
        id="anthropic-key",
        kind="api_key",
        keywords=("sk-",),
        pattern=r"\bsk-ant-[a-z]+\d{2}-[A-Za-z0-9_-]{20,}",
        source="https://docs.anthropic.com/en/api/getting-started#authentication",
        unbroken=True,
    ),
    Rule(
        id="huggingface-token",
        kind="api_key",
        keywords=("hf_",),
        pattern=r"\bhf_[A-Za-z0-9]{30,}",
        source="https://huggingface.co/docs/hub/security-tokens",
        unbroken=True,
    ),
    Rule(
        id="digitalocean-token",
        kind="api_key",
        keywords=("_v1_",),
        pattern=r"\bdo[por]_v1_[a-f0-9]{64}",
        source="https://docs.digitalocean.com/reference/api/create-personal-access-token/",
        unbroken=True,
    ),
    Rule(
        id="shopify-token",
        kind="api_key",
        keywords=("shp",),
        pattern=r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
        source="https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens",
        unbroken=True,
    ),
    Rule(
        id="grafana-token",
        kind="api_key",
        keywords=("gl",),
        pattern=r"\b(?:glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,}={0,2})",
        source="https://grafana.com/docs/grafana/latest/administration/service-accounts/",
        unbroken=True,
    ),
    Rule(
        id="databricks-token",
        kind="api_key",
        keywords=("dapi",),
        pattern=r"\bdapi[a-f0-9]{32}(?:-\d)?\b",
        source="https://docs.databricks.com/en/dev-tools/auth/pat.html",
        unbroken=True,
    ),
    Rule(
        id="newrelic-key",
        kind="api_key",
        keywords=("nrak-",),
        pattern=r"\bNRAK-[A-Z0-9]{27}\b",
        source="https://docs.newrelic.com/docs/apis/intro-apis/new-relic-api-keys/",
        unbroken=True,
    ),
    Rule(
        id="atlassian-token",
        kind="api_key",
        keywords=("atatt3",),
        pattern=r"\bATATT3[A-Za-z0-9_=-]{60,}",
        source="https://support.atlassian.com/atlassian-account/docs/manage-api-tokens-for-your"
        "-atlassian-account/",
        unbroken=True,
    ),
    Rule(
        id="square-token",
        kind="api_key",
        keywords=("sq0", "eaaa"),
        pattern=r"\b(?:sq0(?:atp|csp)-[A-Za-z0-9_-]{22,43}|EAAA[A-Za-z0-9_-]{60})",
        source="https://developer.squareup.com/docs/build-basics/access-tokens",
        unbroken=True,
    ),
    Rule(
        id="mailgun-key",
        kind="api_key",
        keywords=("key",),
        pattern=r"\bkey-[0-9a-f]{32}\b",
        source="https://documentation.mailgun.com/docs/mailgun/api-reference/authentication/",
        unbroken=True,
    ),
    Rule(
        id="telegram-bot-token",
        kind="api_key",
        keywords=("bot",),
        pattern=r"(?:(?<=/bot)|\b)\d{6,12}:[A-Za-z0-9_-]{35}\b",
        source="https://core.telegram.org/bots/api#authorizing-your-bot",
        unbroken=True,
    ),
    Rule(
        id="azure-connection-string-key",
        kind="secret",
        keywords=("key",),
        pattern=r"""(?i)(?:AccountKey|SharedAccessKey)\s*=\s*(?!<redacted)(?P<secret>[^\s;&"']+)""",
        source="https://learn.microsoft.com/en-us/azure/storage/common/storage-configure"
        "-connection-string ; Service Bus / Event Hubs SAS connection strings",
    ),
    Rule(
        id="cli-secret-flag",
        kind="secret",
        keywords=("--", "-u "),
        pattern=(
            r"(?:--(?:[\w-]*-)?(?:password|passwd|token|secret|api-key|apikey)[= ]"
            r"|(?<=\s)-u\s+[^\s:]+:)(?!<redacted)(?P<secret>\S+)"
        ),
        source="mysql(1) --password, curl(1) -u user:password, and the --token/--api-key flags "
        "of vault, gh, kubectl and most CLIs",
    ),
    Rule(
        id="secret-named-field",
        kind="secret",
        keywords=(
            "key",
            "token",
            "secret",
            "pass",
            "pwd",
            "sess",
            "sig",
        ),
        pattern=(
            r"(?i)(?<![\w.-])(?:"
            + r"""(?P<q>["'])[\w.-]++"""  # JSON or dict: "password": "x"
            + _SECRET_NAME_END
            + r"(?P=q)\s*:\s*"
            + r"|[\w.-]++"  # logfmt, URL query, ini, cookies: password=x
            + _SECRET_NAME_END
            + r"\s*=\s*"
            + r"|[\w.-]++"  # YAML-ish: password: x
            + _STRONG_NAME_END
            + r":\s*"
            + r")"
            + _VALUE
        ),
        source="OWASP Logging Cheat Sheet (data to exclude: passwords, session ids, access "
        "tokens, keys) - https://cheatsheetseries.owasp.org/cheatsheets/Logging_Cheat_Sheet.html",
    ),
    Rule(
        id="random-key-field",
        kind="secret",
        keywords=("key",),
        pattern=(
            r"""(?i)(?<![\w.-])(?P<q>["']?)[\w.-]*+(?<=key)(?P=q)\s*[:=]\s*(?!<redacted)"""
            r"""(?:(?P<vq>["'])(?!<redacted)(?P<secret>[^"'\s]*)(?P=vq)|(?P<secret2>[^\s&,;"'}\]]++))"""
        ),
        source="fields merely called `key`/`*_key` (config, cache, object keys) are secret "
        "only when the value looks generated: see `looks_random` in redact.py",
        check="random",
    ),
)

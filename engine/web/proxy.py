"""The client's address behind reverse proxies: the `TRUSTED_PROXIES` setting.

gunicorn sets REMOTE_ADDR to the connection's peer, which behind a TLS proxy or load balancer is
the proxy, and it never reads X-Forwarded-For (its `forwarded_allow_ips` covers the scheme only).
What counts per client address (the login and call-control rate limits) would then count every
client together: one stranger's failed logins would lock everybody out.

`TRUSTED_PROXIES=N`, the number of proxies in front of the app that each append what they
received to X-Forwarded-For, -Proto and -Host, has `create_app` wrap the app in werkzeug's
`ProxyFix` with `x_for=x_proto=x_host=N`: the client, scheme and host are the N-th values from
the right, the ones the outermost trusted proxy saw, which a client cannot forge as long as the
app is reachable only through those proxies. 0 (the default) trusts no header, the right choice
when clients connect directly: then a client's X-Forwarded-Host is never read.

The webhook signature check and Twilio's callback URLs use that scheme and host when
PUBLIC_BASE_URL is not set (engine/web/signature.py); set, it overrides both.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

MAX_PROXIES = 10


def trusted_proxies(value: str | int | None) -> int:
    """The setting as a count of proxies; ValueError, saying what is expected, otherwise."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return 0
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or int(text) > MAX_PROXIES:
        raise ValueError(f"TRUSTED_PROXIES={value!r}: write how many proxies in front of Phoney "
                         f"add X-Forwarded-For (0 for none, 1 for one TLS proxy, at most "
                         f"{MAX_PROXIES})")
    return int(text)


def install_proxy_fix(app: Flask, value: str | int | None) -> int:
    """Take the client's address, scheme and host from the X-Forwarded headers past `value`
    trusted proxies (if any); none of them otherwise."""
    count = trusted_proxies(value)
    if count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    app.config["TRUSTED_PROXIES"] = count
    return count

"""The doctor's check of the flows' requests (http nodes, ai tools): where they may go and the
`${NAME}` variables they read, which are looked up here but never shown."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from engine.actions.hosts import HostPolicy
from engine.doctor.report import Finding
from engine.flows.checks import requests_of, secret_names
from engine.flows.loader import load_project
from engine.settings import Settings


def check_requests(settings: Settings, environ: Mapping[str, str] | None = None
                   ) -> Iterator[Finding]:
    """Flows that send requests have HTTP_ALLOW_HOSTS set and every `${NAME}` they read set
    in the environment; a warning for each that is not (those requests would be refused)."""
    registry = load_project(settings.project_root).registry
    if registry is None:
        return  # the flows check says why
    environ = os.environ if environ is None else environ
    users: dict[str, list[str]] = {}
    for flow in registry.flows.values():
        for name in secret_names(flow):
            users.setdefault(name, []).append(flow.id)
    sending = [flow.id for flow in registry.flows.values()
               if any(node.type == "http" or getattr(node, "tools", ())
                      for node in flow.nodes.values())]
    if not sending:
        yield Finding("requests", "skip", "no flow sends requests (http nodes, tools)")
        return
    try:
        policy = HostPolicy.parse(settings.http_allow_hosts)
    except ValueError:
        policy = HostPolicy(any_name=True)  # the settings check names the bad entry
    allowed = bool(policy)
    if not allowed:
        yield Finding("requests", "warn", f"HTTP_ALLOW_HOSTS is not set: every request of "
                                          f"{', '.join(sorted(sending))} is refused; list your "
                                          f"API's host")
    refused: dict[str, list[str]] = {}
    for flow in registry.flows.values() if allowed else ():
        for _, request, _ in requests_of(flow):
            host = urlsplit(request.url).hostname if "{" not in request.url else None
            if host and policy.host_refusal(host):
                refused.setdefault(host, []).append(flow.id)
    for host, flows in sorted(refused.items()):
        allowed = False
        yield Finding("requests", "warn", f"{host} (used by {', '.join(sorted(set(flows)))}) is "
                                          f"not in HTTP_ALLOW_HOSTS: those requests are refused")
    unset = sorted(name for name in users if not environ.get(name))
    for name in unset:
        yield Finding("requests", "warn", f"${{{name}}} is used by {', '.join(users[name])} but "
                                          f"{name} is not set: those requests are refused")
    if allowed and not unset:
        yield Finding("requests", "ok", f"{len(sending)} flow(s) send requests; "
                                        f"{len(users)} variable(s) they read are set")

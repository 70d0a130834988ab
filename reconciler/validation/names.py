"""Names and addresses as Istio validates them (pkg/config/validation/agent, pkg/config/labels).

Each function returns None when the value is acceptable, else a sentence saying what is wrong. The rules
follow Istio's: DNS labels may use upper case (Istio's `IsDNS1123Label` allows it), a domain may end
with one dot, a wildcard is allowed only in the first label, and an all-numeric top-level label is not a
domain. Kubernetes object names are stricter (lower case only); `object_name_error` checks those.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from reconciler.config.hosts import is_ip_address

MAX_DOMAIN_LENGTH = 255
MAX_LABEL_LENGTH = 63
MAX_OBJECT_NAME_LENGTH = 253

_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS_LABEL = re.compile(rf"^{_LABEL}$")
_WILDCARD_LABEL = re.compile(rf"^(?:\*|(?:\*|\*-)?{_LABEL})$")
_LOWER_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$")
# Kubernetes label keys: an optional DNS prefix and a `/`, then a name; values may be empty.
_LABEL_KEY = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*/)?(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
OUTBOUND_SNI_PREFIX = "outbound_"
# The answers below depend on the text alone, and a repo repeats the same names thousands of times (destination
# hosts, subset names, namespaces, label keys): each answer is kept, in a bounded cache.
_remembered = functools.lru_cache(maxsize=16384)


@_remembered
def is_dns_label(value: str) -> bool:
    return len(value) <= MAX_LABEL_LENGTH and bool(_DNS_LABEL.match(value))


def is_wildcard_label(value: str) -> bool:
    return len(value) <= MAX_LABEL_LENGTH and bool(_WILDCARD_LABEL.match(value))


def ip_error(value: str) -> str | None:
    return None if is_ip_address(value) else f"{value!r} is not a valid IP address"


def subnet_error(value: str) -> str | None:
    """An IP address or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`)."""
    if value.count("/") == 1:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not a valid CIDR block"
        return None
    return ip_error(value)


def _domain_preconditions(domain: str) -> str | None:
    if len(domain) > MAX_DOMAIN_LENGTH:
        return f"domain name {domain[:40]!r}... is too long (at most {MAX_DOMAIN_LENGTH} characters)"
    if not domain:
        return "an empty domain name is not allowed"
    return None


def _labels_error(domain: str, rest: str) -> str | None:
    parts = rest.split(".")
    if parts[-1].isdigit():
        return f"domain name {domain!r} is invalid: the top-level label {parts[-1]!r} cannot be all digits"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot (`istio.io.`) is an unambiguous absolute name
        if not is_dns_label(label):
            return f"domain name {domain!r} is invalid: label {label!r} is not a DNS label (letters, digits, '-')"
    return None


@_remembered
def fqdn_error(domain: str) -> str | None:
    return _domain_preconditions(domain) or _labels_error(domain, domain)


@_remembered
def wildcard_domain_error(domain: str) -> str | None:
    """A domain name whose first label may be `*`, `*foo` or `*-foo` (Istio's ValidateWildcardDomain)."""
    problem = _domain_preconditions(domain)
    if problem:
        return problem
    first, dot, rest = domain.partition(".")
    if not is_wildcard_label(first):
        if "*" in domain:
            return f"domain name {domain!r} is invalid: a wildcard is allowed only at the start, as in *.example.com"
        return f"domain name {domain!r} is invalid: label {first!r} is not a DNS label (letters, digits, '-')"
    return _labels_error(domain, rest) if dot else None


def partial_wildcard_error(host: str) -> str | None:
    if "*" in host and host != "*" and not host.startswith("*."):
        return f"partial wildcard {host!r} is not allowed here; use '*' alone or a '*.' prefix"
    return None


def gateway_host_errors(entry: str) -> list[str]:
    """A Gateway server host: `host`, `ns/host`, `./host` or `*/host` (ValidateNamespaceSlashWildcardHostname)."""
    if "/" not in entry:
        return _gateway_host_part_errors(entry)
    namespace, _, host = entry.partition("/")
    problems = []
    if not namespace or not host:
        problems.append(f"host entry {entry!r} needs both a namespace and a host around '/'")
    if namespace not in ("*", ".") and not is_dns_label(namespace):
        problems.append(f"invalid namespace {namespace!r} in host entry {entry!r}; use a namespace name, '.' or '*'")
    return problems + _gateway_host_part_errors(host)


def _gateway_host_part_errors(host: str) -> list[str]:
    problems = []
    if host != "*" and "." not in host:
        problems.append(f"short host name {host!r} is not allowed in a Gateway; write the full domain name")
    domain_problem = wildcard_domain_error(host)
    if domain_problem and not is_ip_address(host):  # a Gateway also accepts an IP address as host
        problems.append(domain_problem)
    partial = partial_wildcard_error(host)
    if partial:
        problems.append(partial)
    return problems


def vs_gateway_host_error(host: str, has_sni_routes: bool) -> str | None:
    """A host of a VirtualService bound to gateways; SNI routes may also use `outbound_.<port>_._.<host>`."""
    if has_sni_routes and host.startswith(OUTBOUND_SNI_PREFIX):
        return _outbound_sni_error(host)
    return wildcard_domain_error(host)


def _outbound_sni_error(host: str) -> str | None:
    parts = host.split("_")
    expected = "outbound_.<PORT>_._.<HOSTNAME>"
    if len(parts) < 4:
        return f"domain name {host!r} is invalid; auto-passthrough SNI hosts look like {expected}"
    port, hostname = parts[1].strip("."), parts[3].strip(".")
    if not re.search(r"[0-9]", port) or not re.search(r"[a-zA-Z]", hostname):
        return f"domain name {host!r} is invalid; auto-passthrough SNI hosts look like {expected}"
    return None


@_remembered
def object_name_error(name: str, label_only: bool) -> str | None:
    """Kubernetes object names: a lower-case DNS subdomain, or a single label where dots are not allowed."""
    if not name:
        return "the name is empty"
    if label_only:
        if len(name) <= MAX_LABEL_LENGTH and _LOWER_LABEL.match(name):
            return None
        return f"{name!r} is not a DNS label (at most 63 lower-case letters, digits and '-', no dots)"
    if len(name) <= MAX_OBJECT_NAME_LENGTH and all(_LOWER_LABEL.match(part) for part in name.split(".")):
        return None
    return f"{name!r} is not a valid name (lower-case letters, digits, '-' and '.', at most 253 characters)"


@_remembered
def label_key_error(key: str) -> str | None:
    return None if _LABEL_KEY.match(key) else f"{key!r} is not a valid label key"


@_remembered
def label_value_error(value: str) -> str | None:
    return (
        None
        if len(value) <= MAX_LABEL_LENGTH and _LABEL_VALUE.match(value)
        else f"{value!r} is not a valid label value"
    )

"""networking.k8s.io/v1 Ingress and IngressClass, and v1 Secrets of type kubernetes.io/tls, as values.

Validation follows the API server's (apis/networking/validation): a host is a DNS name,
possibly a wildcard whose `*` is the whole first label, never an IP address or with a port;
a path starts with `/` for Exact and Prefix; a backend is a Service by name with a port by
number (1-65535) or by name (an IANA service name); an Ingress has rules or a default backend.
Errors name the field (`IngressError.field`), as the manifest loader reports them.

A Secret is kept as the API server keeps one: a `kubernetes.io/tls` Secret must have the
`tls.crt` and `tls.key` keys, but their contents are not checked there; whether they are a
matching certificate and key is the ingress controller's question (`tls_pair_error`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from .fields import FieldError
from .fields import items as _list
from .fields import obj as _obj
from .fields import string as _str

PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
CONTROLLER = "gingham.dev/ingress-controller"
CLASS = "gingham"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
# the LoadBalancer Service in front of every node's HAProxy (the lab makes it; its endpoints are the nodes)
SERVICE_NAMESPACE, SERVICE_NAME = "gingham-system", "gingham-ingress"
GATEWAY_SERVICE_PREFIX = "gw-"  # and one per Gateway, gw-<namespace>-<name> (ingress/gateway.py)


def served_by_nodes(namespace: str, name: str, has_selector: bool) -> bool:
    """The Services whose endpoints are the nodes' HAProxy: the ingress's and each Gateway's."""
    return namespace == SERVICE_NAMESPACE and not has_selector and (
        name == SERVICE_NAME or name.startswith(GATEWAY_SERVICE_PREFIX))

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOST = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


IngressError = FieldError  # a field and why, as the manifest loader reports them


@dataclass(frozen=True)
class Backend:
    """A Service and one of its ports, by number or by name."""

    service: str
    port: int | str

    def ref(self, namespace: str) -> str:
        return f"{namespace}/{self.service}:{self.port}"


@dataclass(frozen=True)
class IngressPath:
    path: str
    type: str
    backend: Backend


@dataclass(frozen=True)
class IngressRule:
    host: str  # "" matches every host; "*.example.com" exactly one more label
    paths: tuple[IngressPath, ...]


@dataclass(frozen=True)
class IngressTLS:
    hosts: tuple[str, ...]
    secret: str


@dataclass(frozen=True)
class Ingress:
    namespace: str
    name: str
    class_name: str | None
    default_backend: Backend | None
    rules: tuple[IngressRule, ...]
    tls: tuple[IngressTLS, ...]
    created: str = ""  # metadata.creationTimestamp: the older of two claims on a host and path wins

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class IngressClass:
    name: str
    controller: str
    is_default: bool


@dataclass(frozen=True)
class Secret:
    namespace: str
    name: str
    type: str
    data: dict[str, bytes]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def check_host(host: str, field: str) -> str:
    """A rule's or a TLS entry's host, as the API server accepts it."""
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip:
        raise IngressError(field, f"{host!r} must be a DNS name, not an IP address")
    if len(host) > 253 or not _HOST.match(host):
        raise IngressError(field, f"{host!r} is not a DNS name (a wildcard is '*.' and a name: *.example.com)")
    return host


def _backend(v: Any, field: str) -> Backend:
    b = _obj(v, field)
    if "resource" in b:
        raise IngressError(f"{field}.resource", "resource backends are not served by the gingham ingress controller; "
                                                "use a Service")
    svc = _obj(b.get("service"), f"{field}.service")
    if not svc:
        raise IngressError(f"{field}.service", "is required")
    name = _str(svc.get("name"), f"{field}.service.name", required=True)
    port = _obj(svc.get("port"), f"{field}.service.port")
    number, pname = port.get("number"), port.get("name")
    if (number is None) == (pname is None or pname == ""):
        raise IngressError(f"{field}.service.port", "exactly one of number and name")
    if number is not None:
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            raise IngressError(f"{field}.service.port.number", f"must be between 1 and 65535, got {number!r}")
        return Backend(name, number)
    pname = _str(pname, f"{field}.service.port.name")
    if len(pname) > 15 or not _PORT_NAME.match(pname) or not re.search(r"[a-z]", pname):
        raise IngressError(f"{field}.service.port.name", f"{pname!r} is not a port name")
    return Backend(name, pname)


def parse_ingress(namespace: str, name: str, body: dict[str, Any]) -> Ingress:
    spec = _obj(body.get("spec"), "spec")
    meta = _obj(body.get("metadata"), "metadata")
    class_name = _str(spec.get("ingressClassName"), "spec.ingressClassName") or None
    legacy = _obj(meta.get("annotations"), "metadata.annotations").get(LEGACY_CLASS_ANNOTATION)
    if class_name is None and isinstance(legacy, str) and legacy:
        class_name = legacy  # the annotation before IngressClass, still honoured by the controllers
    default = _backend(spec["defaultBackend"], "spec.defaultBackend") if spec.get("defaultBackend") else None
    rules = []
    for i, r in enumerate(_list(spec.get("rules"), "spec.rules")):
        where = f"spec.rules[{i}]"
        r = _obj(r, where)
        host = _str(r.get("host"), f"{where}.host")
        if host:
            check_host(host, f"{where}.host")
        http = _obj(r.get("http"), f"{where}.http")
        paths = []
        raw_paths = _list(http.get("paths"), f"{where}.http.paths")
        if "http" in r and not raw_paths:
            raise IngressError(f"{where}.http.paths", "must have at least one path")
        for j, p in enumerate(raw_paths):
            pw = f"{where}.http.paths[{j}]"
            p = _obj(p, pw)
            ptype = _str(p.get("pathType"), f"{pw}.pathType", required=True)
            if ptype not in PATH_TYPES:
                raise IngressError(f"{pw}.pathType", f"must be one of {', '.join(PATH_TYPES)}, got {ptype!r}")
            path = _str(p.get("path"), f"{pw}.path") or ("/" if ptype == "ImplementationSpecific" else "")
            if not path.startswith("/"):
                raise IngressError(f"{pw}.path", f"must be an absolute path (starting with /), got {path!r}")
            if ptype != "ImplementationSpecific" and ("//" in path or any(s in (".", "..") for s in path.split("/"))):
                raise IngressError(f"{pw}.path", f"{path!r} has an empty, '.' or '..' segment")
            paths.append(IngressPath(path, ptype, _backend(p.get("backend"), f"{pw}.backend")))
        rules.append(IngressRule(host, tuple(paths)))
    if default is None and not rules:
        raise IngressError("spec", "either defaultBackend or rules must be specified")
    tls = []
    for i, t in enumerate(_list(spec.get("tls"), "spec.tls")):
        t = _obj(t, f"spec.tls[{i}]")
        hosts = tuple(check_host(_str(h, f"spec.tls[{i}].hosts[{j}]", required=True), f"spec.tls[{i}].hosts[{j}]")
                      for j, h in enumerate(_list(t.get("hosts"), f"spec.tls[{i}].hosts")))
        tls.append(IngressTLS(hosts, _str(t.get("secretName"), f"spec.tls[{i}].secretName")))
    created = meta.get("creationTimestamp")
    return Ingress(namespace, name, class_name, default, tuple(rules), tuple(tls),
                   created if isinstance(created, str) else "")


def parse_ingress_class(name: str, body: dict[str, Any]) -> IngressClass:
    spec = _obj(body.get("spec"), "spec")
    controller = _str(spec.get("controller"), "spec.controller", required=True)
    if len(controller) > 250 or "/" not in controller:
        raise IngressError("spec.controller", f"{controller!r} must be a domain-prefixed path (example.com/name)")
    ann = _obj(_obj(body.get("metadata"), "metadata").get("annotations"), "metadata.annotations")
    return IngressClass(name, controller, ann.get(DEFAULT_CLASS_ANNOTATION) == "true")


def parse_secret(namespace: str, name: str, body: dict[str, Any]) -> Secret:
    """`data` is base64 (refused when it is not), `stringData` plain text and wins over `data`."""
    stype = _str(body.get("type"), "type") or "Opaque"
    data: dict[str, bytes] = {}
    for k, v in _obj(body.get("data"), "data").items():
        try:
            data[str(k)] = base64.b64decode(_str(v, f"data.{k}"), validate=True)
        except (binascii.Error, ValueError):
            raise IngressError(f"data.{k}", "is not valid base64") from None
    for k, v in _obj(body.get("stringData"), "stringData").items():
        data[str(k)] = _str(v, f"stringData.{k}").encode()
    if stype == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                raise IngressError(f"data[{k}]", "is required for a kubernetes.io/tls Secret")
    return Secret(namespace, name, stype, data)


def tls_pair_error(secret: Secret) -> str:
    """Why a TLS Secret cannot serve (not PEM, not a certificate, the key not the certificate's), or ""."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    if secret.type != "kubernetes.io/tls":
        return f"type is {secret.type}, not kubernetes.io/tls"
    try:
        cert = x509.load_pem_x509_certificate(secret.data["tls.crt"])
    except (ValueError, KeyError):
        return "tls.crt is not a PEM certificate"
    try:
        key = serialization.load_pem_private_key(secret.data["tls.key"], None)
    except (ValueError, TypeError, KeyError):
        return "tls.key is not an unencrypted PEM private key"
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, fmt) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, fmt):
        return "tls.key is not the key of tls.crt"
    return ""


def served_class(ing: Ingress, classes: dict[str, IngressClass]) -> bool:
    """Whether gingham's controller serves this Ingress: its class is one of ours, or it names
    none and one of ours is the default (the IngressClass admission's rule)."""
    if ing.class_name is not None:
        c = classes.get(ing.class_name)
        return c is not None and c.controller == CONTROLLER
    return any(c.is_default and c.controller == CONTROLLER for c in classes.values())


def wildcard_matches(pattern: str, host: str) -> bool:
    """`*.example.com` matches `foo.example.com`, not `example.com` nor `a.b.example.com`."""
    suffix = pattern[1:]
    return host.endswith(suffix) and "." not in host[:-len(suffix)] and len(host) > len(suffix)


__all__ = ["Backend", "CLASS", "CONTROLLER", "Ingress", "IngressClass", "IngressError", "IngressPath", "IngressRule",
           "IngressTLS", "Secret", "check_host", "parse_ingress", "parse_ingress_class", "parse_secret",
           "served_class", "tls_pair_error", "wildcard_matches"]

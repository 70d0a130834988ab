"""Load a tree of manifest files into typed resources, with findings for everything that is wrong.

Input is a mapping of relative path → bytes, so the same code reads a working folder (`validate`) and a
git tree at a SHA (the daemon) without a checkout.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.diagnostics import Finding, Location, Severity
from reconciler.manifests.blockstyle import load_plain_documents
from reconciler.manifests.model import (
    FLEET_API_VERSION,
    ISTIO_GROUP,
    ISTIO_VERSIONS,
    SPEC_TYPES,
    ObjectMeta,
    Resource,
)
from reconciler.manifests.schema import MISSING, Decoder
from reconciler.manifests.yamldoc import Document, FilePositions, YamlError, load_documents

MANIFEST_SUFFIXES = (".yaml", ".yml")
# Far above any real manifest file; a larger file is refused before parsing so memory stays bounded.
MAX_FILE_BYTES = 8 * 1024 * 1024
_TOP_LEVEL_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}


@dataclass(frozen=True)
class ManifestSet:
    resources: tuple[Resource, ...]
    findings: tuple[Finding, ...] = field(default=())
    # Each kind's resources in order (what `kinds` gives), from a loader that patched the previous revision's
    # grouping; derived from `resources`, so it takes no part in equality.
    grouped: Mapping[str, tuple[Resource, ...]] | None = field(default=None, compare=False, repr=False)

    def of_kind(self, kind: str) -> list[Resource]:
        return list(self.kinds.get(kind, ()))

    @functools.cached_property
    def kinds(self) -> Mapping[str, tuple[Resource, ...]]:
        """The resources grouped once: every stage asks for several kinds, and a big repo has many resources."""
        return self.grouped if self.grouped is not None else group_by_kind(self.resources)


def group_by_kind(resources: Iterable[Resource]) -> dict[str, tuple[Resource, ...]]:
    by_kind: dict[str, list[Resource]] = {}
    for r in resources:
        by_kind.setdefault(r.kind, []).append(r)
    return {kind: tuple(group) for kind, group in by_kind.items()}


def is_manifest_path(path: str) -> bool:
    """A YAML file outside hidden folders: `.github/workflows/*.yml` or `.pre-commit-config.yaml` are not manifests."""
    return path.endswith(MANIFEST_SUFFIXES) and not any(part.startswith(".") for part in path.split("/"))


FileLoader = Callable[[str, bytes, bool], tuple[Sequence[Resource], Sequence[Finding]]]


def load_manifests(files: Mapping[str, bytes], lenient: bool = False, load: FileLoader | None = None) -> ManifestSet:
    """Parse every manifest file (sorted by path, so the result does not depend on the caller's order).

    `load` replaces `load_file`, e.g. by a cache that returns the same resources for the same bytes.
    """
    load = load or load_file
    resources: list[Resource] = []
    findings: list[Finding] = []
    for path in sorted(p for p in files if is_manifest_path(p)):
        file_resources, file_findings = load(path, files[path], lenient)
        resources.extend(file_resources)
        findings.extend(file_findings)
    findings.extend(_duplicates(resources))
    return ManifestSet(tuple(resources), tuple(findings))


def load_file(path: str, raw: bytes, lenient: bool = False) -> tuple[list[Resource], list[Finding]]:
    """The file's resources and findings, every one located in `path` (load_memo.py relies on that)."""

    def problem(code: str, message: str, line: int = 1, column: int = 1) -> tuple[list[Resource], list[Finding]]:
        return [], [Finding(Severity.ERROR, code, message, Location(path, line, column))]

    if len(raw) > MAX_FILE_BYTES:
        # Callers may read only the first MAX_FILE_BYTES + 1 bytes of a huge file, so the size is "over", not exact.
        return problem("file-too-large", f"the file is over {MAX_FILE_BYTES} bytes; manifests that large are refused")
    if b"\x00" in raw:
        return problem("not-text", "the file is binary (it contains NUL bytes), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return problem("not-utf8", f"the file is not UTF-8 (bad byte at offset {exc.start}); save it as UTF-8", line)
    resources: list[Resource] = []
    findings: list[Finding] = []
    try:
        for doc in _documents(raw, text):
            resource, doc_findings = _load_document(path, doc, lenient)
            findings.extend(doc_findings)
            if resource is not None:
                resources.append(resource)
    except YamlError as exc:
        # A malformed file contributes nothing: half a file is worse than none.
        return problem("yaml-syntax", exc.message, exc.line, exc.column)
    return resources, findings


def _documents(raw: bytes, text: str) -> Iterable[Document]:
    """The file's documents: read line by line when it is plain block-style YAML (positions are then worked
    out only if a finding needs one), else by libyaml with every position."""
    plain = load_plain_documents(text)
    if plain is None:
        return load_documents(text)
    positions = FilePositions(raw)
    return [Document(data, positions.document(i, (line, column)), line) for i, (data, line, column) in enumerate(plain)]


def _load_document(path: str, doc: Document, lenient: bool) -> tuple[Resource | None, list[Finding]]:
    decoder = Decoder(doc, path, lenient=lenient)
    data = doc.data
    if not isinstance(data, dict):
        decoder.report((), "not-a-resource", "a manifest document must be a mapping with apiVersion and kind")
        return None, decoder.findings
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        decoder.report((), "missing-kind", "the document needs both 'apiVersion' and 'kind'")
        return None, decoder.findings
    if kind not in SPEC_TYPES:
        decoder.report(
            ("kind",),
            "unknown-kind",
            f"kind {kind!r} is not used by gateways; the document is ignored",
            Severity.WARNING,
        )
        return None, decoder.findings
    expected = _expected_api_versions(kind)
    if api_version not in expected:
        decoder.report(("apiVersion",), "wrong-api-version", f"{kind} takes apiVersion {' or '.join(expected)}")
        return None, decoder.findings
    metadata = decoder.decode(ObjectMeta, data.get("metadata"), ("metadata",))
    if metadata is MISSING:
        return None, decoder.findings
    decoder.resource = f"{kind} {metadata.namespace}/{metadata.name}"
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            decoder.report((key,), "unknown-field", f"unknown top-level field {key!r}")
    decoder.plain_values = True  # whatever the metadata holds: the value checks read the spec alone
    spec = decoder.decode(SPEC_TYPES[kind], data.get("spec") or {}, ("spec",))
    if spec is MISSING:
        return None, decoder.findings
    line, column = doc.position(())
    plain_spec = spec if decoder.plain_values else None
    resource = Resource(kind, api_version, metadata, spec, Location(path, line, column), doc.positions, plain_spec)
    return resource, decoder.findings


def _expected_api_versions(kind: str) -> list[str]:
    if kind == "Fleet":
        return [FLEET_API_VERSION]
    return [f"{ISTIO_GROUP}/{v}" for v in ISTIO_VERSIONS]


ResourceKey = tuple[str, str, str]
resource_key = operator.attrgetter("kind", "metadata.namespace", "metadata.name")  # what may be defined once


def _duplicates(resources: Iterable[Resource]) -> list[Finding]:
    seen: dict[ResourceKey, Resource] = {}
    findings = []
    for r in resources:
        first = seen.setdefault(resource_key(r), r)
        if first is not r:
            findings.append(duplicate_finding(r, first))
    return findings


def duplicate_finding(r: Resource, first: Resource) -> Finding:
    return Finding(
        Severity.ERROR,
        "duplicate-resource",
        f"{r.ref} is defined twice (first at {first.location}); rename one of them",
        r.location,
        r.ref,
        (first.location,),
    )

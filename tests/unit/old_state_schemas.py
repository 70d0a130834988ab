"""The state store's earlier schemas, as those versions wrote them: stores for the migration tests to open."""

# What every earlier schema had alike: the meta, resources, fleets, rollouts and history tables.
_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
_RESOURCES = """CREATE TABLE resources (
    digest TEXT PRIMARY KEY, type_url TEXT NOT NULL, name TEXT NOT NULL, body BLOB NOT NULL);
"""
_FLEETS_ROLLOUTS_HISTORY = """CREATE TABLE fleets (
    name TEXT PRIMARY KEY,
    applied_revision TEXT NOT NULL DEFAULT '', applied_version TEXT NOT NULL DEFAULT '',
    last_good_revision TEXT NOT NULL DEFAULT '', last_good_version TEXT NOT NULL DEFAULT '',
    quarantined_revision TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL);
CREATE TABLE rollouts (
    fleet TEXT PRIMARY KEY, revision TEXT NOT NULL, version TEXT NOT NULL REFERENCES snapshots(version),
    kind TEXT NOT NULL, started_at REAL NOT NULL);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fleet TEXT NOT NULL, revision TEXT NOT NULL, kind TEXT NOT NULL,
    result TEXT NOT NULL, reason TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL NOT NULL,
    details TEXT NOT NULL DEFAULT '{}');
"""

# Schema 0 (no PRAGMA user_version): a row per snapshot member in `snapshot_resources`.
SCHEMA_0 = (
    _META
    + _RESOURCES
    + """CREATE TABLE snapshots (version TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE snapshot_resources (
    version TEXT NOT NULL REFERENCES snapshots(version), digest TEXT NOT NULL REFERENCES resources(digest),
    PRIMARY KEY (version, digest));
"""
    + _FLEETS_ROLLOUTS_HISTORY
)

# Schema 1: a snapshot's members in one column; every resource a whole body, no pieces.
SCHEMA_1 = (
    _META
    + _RESOURCES
    + "CREATE TABLE snapshots (version TEXT PRIMARY KEY, created_at REAL NOT NULL, members TEXT NOT NULL DEFAULT '');\n"
    + _FLEETS_ROLLOUTS_HISTORY
    + "CREATE INDEX history_by_fleet ON history (fleet, id);\nPRAGMA user_version = 1;\n"
)

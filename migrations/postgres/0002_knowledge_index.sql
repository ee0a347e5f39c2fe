-- The knowledge index, shared by every replica (bot/knowledge/postgres.py): `bot ingest` (or a
-- replica's refresh at start) writes a new version and points knowledge_current at it in one
-- transaction, so searches see the old index or the new one, never half of one.
--
-- Chunks and vectors belong to a document version (path, sha256 of its bytes), not to an index
-- version: an ingest writes rows only for new and changed documents, and a new index version is
-- one row per document (knowledge_files), not per chunk.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE knowledge_versions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The embedder's space its vectors are in (JSON: provider, model, ...) and their dimensions;
    -- NULL when it has none. Vectors of another space are never loaded with it.
    embedding TEXT,
    dimensions INTEGER,
    created_at TEXT COLLATE "C" NOT NULL
        DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
);

-- One row: the version searches use.
CREATE TABLE knowledge_current (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version_id BIGINT NOT NULL REFERENCES knowledge_versions (id)
);

-- The documents of a version: the local index's manifest, one row per file.
CREATE TABLE knowledge_files (
    version_id BIGINT NOT NULL REFERENCES knowledge_versions (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    vectors BOOLEAN NOT NULL,
    PRIMARY KEY (version_id, path)
);

CREATE INDEX knowledge_files_document ON knowledge_files (path, sha256);

CREATE TABLE knowledge_chunks (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    position INTEGER NOT NULL,
    heading TEXT,
    context TEXT NOT NULL,
    text TEXT NOT NULL,
    -- PostgreSQL full-text search (KEYWORD_SEARCH=fulltext) over what BM25 indexes
    -- (Chunk.indexed_text: file name, headings, text), with the English stemmer and stop words
    -- as BM25 has.
    search tsvector GENERATED ALWAYS AS (
        to_tsvector(
            'english'::regconfig,
            path || ' ' || context || ' ' || coalesce(heading, '') || E'\n\n' || text
        )
    ) STORED,
    UNIQUE (path, sha256, position)
);

CREATE INDEX knowledge_chunks_search ON knowledge_chunks USING GIN (search);

-- A document's vectors as the local index's vector file holds them: a passage may have several
-- (windows of a long passage), `owner` is its position among the document's chunks. `vector`
-- without a dimension: the local model's are 384, an endpoint's whatever it returns; the
-- version's `dimensions` says which, and a load refuses any other.
CREATE TABLE knowledge_vectors (
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    space TEXT NOT NULL,
    seq INTEGER NOT NULL,
    owner INTEGER NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (path, sha256, space, seq)
);

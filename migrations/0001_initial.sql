-- Conversations, their messages, per-workspace settings and keys, and processed platform events.

CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    -- platform-qualified: slack:T123:C456:1700000000.000100, discord:987:654, web:<session>:<n>
    thread_key TEXT NOT NULL UNIQUE,
    workspace TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX conversations_workspace ON conversations (workspace);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text TEXT NOT NULL,
    -- JSON array of {number, path, heading, excerpt, score}
    sources TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'done' CHECK (status IN ('done', 'failed', 'cancelled')),
    author TEXT,
    feedback INTEGER CHECK (feedback IN (-1, 1)),
    feedback_by TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX messages_conversation ON messages (conversation_id, id);

CREATE TABLE workspace_settings (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);

CREATE TABLE api_keys (
    workspace TEXT PRIMARY KEY,
    -- AES-GCM sealed, bound to the workspace; never the key in clear
    ciphertext BLOB NOT NULL,
    set_by TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE processed_events (
    event_id TEXT PRIMARY KEY,
    -- a claim is held while answering; a claim whose holder died is taken over after its lease
    claimed_at REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);

-- Small named values the bot keeps for itself (e.g. the hash of the synced Discord commands).
CREATE TABLE bot_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

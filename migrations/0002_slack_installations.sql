-- Slack OAuth installs (one bot installation per workspace or org) and the short-lived OAuth
-- state values that tie an install redirect to the browser that started it.

CREATE TABLE slack_installations (
    -- slack:T123, slack:E1:T123 (a workspace of an Enterprise Grid org), slack:E1 (org-wide)
    installation TEXT PRIMARY KEY,
    -- AES-GCM sealed JSON of the bot installation, bound to `installation`; tokens never in clear
    ciphertext BLOB NOT NULL,
    installed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE oauth_states (
    state TEXT PRIMARY KEY,
    -- unix time after which the state is refused
    expires_at REAL NOT NULL
);

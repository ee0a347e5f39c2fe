-- What retention needs: reply links (a platform message -> the thread it belongs to, the Discord
-- reply map) in a table of their own with their age, so old ones can be pruned; they were
-- workspace_settings rows named 'discord.thread_of:<message id>' with no time on them. And an
-- index so pruning old event claims finds them without reading the whole table.

CREATE TABLE reply_links (
    workspace TEXT NOT NULL,
    -- platform-qualified message name, e.g. discord.thread_of:1234
    message TEXT NOT NULL,
    thread_key TEXT NOT NULL,
    -- unix time the link was made
    created_at REAL NOT NULL,
    PRIMARY KEY (workspace, message)
);

CREATE INDEX reply_links_created ON reply_links (created_at);

-- Their age is unknown: they count from now, so they are kept one whole retention period.
INSERT INTO reply_links (workspace, message, thread_key, created_at)
SELECT workspace, name, value, CAST(strftime('%s', 'now') AS REAL)
FROM workspace_settings WHERE substr(name, 1, 18) = 'discord.thread_of:';

DELETE FROM workspace_settings WHERE substr(name, 1, 18) = 'discord.thread_of:';

CREATE INDEX processed_events_claimed ON processed_events (claimed_at);

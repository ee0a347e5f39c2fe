-- Answers in flight: one row from the moment an answer starts until its final text is shown, so
-- a process killed mid-answer (kill -9, out of memory, a lost machine) leaves a record that the
-- next start-up uses to end the visible message with an "interrupted" notice and to store the
-- question, instead of leaving "Thinking…" forever.

CREATE TABLE answers_in_flight (
    id INTEGER PRIMARY KEY,
    thread_key TEXT NOT NULL,
    workspace TEXT NOT NULL,
    question TEXT NOT NULL,
    author TEXT,
    -- the claimed platform event, renewed with the heartbeat so no redelivery answers it twice
    event_id TEXT,
    -- slack, discord, ... : which adapter can reach the messages again; NULL: nothing to mend
    platform TEXT,
    -- AES-GCM sealed JSON: where the answer is shown (it may hold an interaction token)
    address BLOB,
    -- JSON [[message id, the rendered text the platform last accepted], ...]
    messages TEXT NOT NULL DEFAULT '[]',
    -- the stored exchange, once recorded (then only the visible end state is left to mend)
    answer_id INTEGER,
    -- host:pid:start of the process answering, and the last time it said it was alive
    owner TEXT NOT NULL,
    heartbeat_at REAL NOT NULL
);

CREATE INDEX answers_in_flight_by_owner ON answers_in_flight (owner);

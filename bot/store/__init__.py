"""The one package that owns SQL: conversations, messages, keys, settings, events, reply links.

`Store` is one object made of one part per concern (`threads`, `events`, `journal`, `links`,
`retention`, `sealed`, `settings`), all sharing the driver, transactions and migrations of
`database`. The SQL is written once; `driver` says what a database must offer it, and `sqlite`
(the embedded default) and `postgres` (DATABASE_URL, shared by replicas) offer it.
"""

from bot.store.database import migration_files
from bot.store.events import EVENT_LEASE_SECONDS, Events
from bot.store.journal import InFlight, Journal
from bot.store.links import Links
from bot.store.retention import PRUNE_BATCH, Pruned, Retention
from bot.store.sealed import Sealed
from bot.store.settings import Settings
from bot.store.sqlite import BUSY_TIMEOUT_MS
from bot.store.threads import Role, Status, StoredMessage, Threads


class Store(Threads, Events, Journal, Links, Retention, Sealed, Settings):
    """Async access to the bot's database; open with `await Store.open(path, vault)` (SQLite)
    or `await Store.open_postgres(url, vault)`."""


__all__ = [
    "BUSY_TIMEOUT_MS",
    "EVENT_LEASE_SECONDS",
    "PRUNE_BATCH",
    "InFlight",
    "Pruned",
    "Role",
    "Status",
    "Store",
    "StoredMessage",
    "migration_files",
]

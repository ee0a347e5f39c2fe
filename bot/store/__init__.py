"""The one package that owns SQL: conversations, messages, keys, settings, events, reply links.

`Store` is one object made of one part per concern (`threads`, `events`, `journal`, `links`,
`retention`, `sealed`, `settings`), all sharing the connections, transactions and migrations of
`database`.
"""

from bot.store.database import BUSY_TIMEOUT_MS, migration_files
from bot.store.events import EVENT_LEASE_SECONDS, Events
from bot.store.journal import InFlight, Journal
from bot.store.links import Links
from bot.store.retention import PRUNE_BATCH, Pruned, Retention
from bot.store.sealed import Sealed
from bot.store.settings import Settings
from bot.store.threads import Role, Status, StoredMessage, Threads


class Store(Threads, Events, Journal, Links, Retention, Sealed, Settings):
    """Async access to the bot's database; open with `await Store.open(path, vault)`."""


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

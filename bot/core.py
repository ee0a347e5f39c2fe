"""The assembled core that `bot run` hands to every adapter: settings, store, knowledge, answers.

Built once at start from `Settings`; adapters receive it as an argument and use only
`conversations` (answering), `keys` (/setkey), `store` (feedback, follow-up checks) and
`suggested_questions` (first screens), and for the operator's endpoints `metrics` and
`readiness` (adapters add their connections' checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from bot.answer import Answerer
from bot.conversation import Conversations
from bot.journal import AnswerJournal
from bot.keys import KeyAdmin
from bot.knowledge import Knowledge
from bot.limits import QuestionLimits
from bot.logs import register_secret
from bot.metrics import Metrics
from bot.private_files import private_database
from bot.readiness import Check, Readiness
from bot.retention import Pruner
from bot.settings import Settings
from bot.shared import Shared, connect
from bot.shared_limits import SharedCounter
from bot.store import Store
from bot.store.postgres import address
from bot.streaming.editor import Editor
from bot.streaming.shared_budget import SharedBudgets
from bot.vault import Vault, open_vault

# Questions first screens offer: Slack shows at most four suggested prompts.
SUGGESTED_QUESTIONS = 4


@dataclass
class Core:
    settings: Settings
    store: Store
    knowledge: Knowledge
    answerer: Answerer
    editor: Editor
    journal: AnswerJournal
    conversations: Conversations
    keys: KeyAdmin
    pruner: Pruner
    shared: Shared | None  # Redis, when REDIS_URL shares budgets and limits with replicas
    metrics: Metrics
    readiness: Readiness

    @classmethod
    async def open(cls, settings: Settings) -> Core:
        shared = await connect(settings)  # first: an unreachable Redis refuses to start
        try:
            store = await open_store(settings)
        except BaseException:
            if shared is not None:
                await shared.close()
            raise
        knowledge = Knowledge(settings)
        metrics = Metrics()
        editor = Editor()
        limits = QuestionLimits(settings)
        if shared is not None:
            # Before anything holds the registry: every budget and limit is then shared.
            editor.budgets = SharedBudgets(editor.clock, shared)
            limits = QuestionLimits(settings, SharedCounter(shared))
        editor.budgets.on_wait = metrics.budget_waited
        answerer = Answerer(settings, knowledge, store, metrics=metrics)
        journal = AnswerJournal(store)
        pruner = Pruner(settings, store)
        pruner.start()  # old threads, event claims and reply links go now and every interval
        return cls(
            settings=settings,
            store=store,
            knowledge=knowledge,
            answerer=answerer,
            editor=editor,
            journal=journal,
            conversations=Conversations(
                settings, store, answerer, editor, journal, limits=limits, metrics=metrics
            ),
            keys=KeyAdmin(settings, store),
            pruner=pruner,
            shared=shared,
            metrics=metrics,
            readiness=core_readiness(store, knowledge),
        )

    async def suggested_questions(self, limit: int = SUGGESTED_QUESTIONS) -> list[str]:
        """A few questions a newcomer could ask, from the knowledge's headings (Slack's suggested
        prompts, the web chat's first screen); [] until documents are indexed."""
        return await self.knowledge.suggestions(limit)

    async def ready(self) -> list[Check]:
        """Every readiness check: the core's (database, index) and those adapters added."""
        return await self.readiness.check()

    async def close(self) -> None:
        # Adapters have stopped taking questions; answers still streaming end as cancelled.
        await self.editor.close()
        await self.pruner.close()
        await self.journal.close()
        await self.answerer.close()
        await self.knowledge.close()
        await self.store.close()
        if self.shared is not None:
            await self.shared.close()


async def open_store(settings: Settings, vault: Vault | None = None) -> Store:
    """The deployment's database with its vault (default: the deployment's): PostgreSQL at
    DATABASE_URL, or SQLite private (0600 in a 0700 DATA_DIR). ConfigError when it can't be."""
    vault = vault or open_vault(settings)
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        register_secret(*_passwords(url))  # a driver's error or a log line may quote it alone
        return await Store.open_postgres(url, vault)
    private_database(settings.database_path)
    return await Store.open(settings.database_path, vault)


def core_readiness(store: Store, knowledge: Knowledge) -> Readiness:
    """The core's own checks; a part that needs one more (a Redis ping) adds it here."""
    readiness = Readiness()

    async def database() -> None:
        await store.ping()

    async def index() -> str | None:
        return None if knowledge.loaded else "not loaded yet"

    readiness.add("database", database)
    readiness.add("index", index)
    return readiness


def database_address(settings: Settings) -> str:
    """Which database the settings name, safe to print: no user or password."""
    if settings.database_url is None:
        return str(settings.database_path)
    return f"postgresql://{address(settings.database_url.get_secret_value())}"


def _passwords(url: str) -> list[str]:
    parts = urlsplit(url)
    return [p for p in (parts.password, *parse_qs(parts.query).get("password", [])) if p]

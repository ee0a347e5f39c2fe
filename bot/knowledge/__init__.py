"""What the bot knows: documents in KNOWLEDGE_DIR cut into passages (`chunking`), kept on disk
(`files`) or, with DATABASE_URL, in PostgreSQL for every replica (`postgres`; `storage` is what
both offer), refreshed incrementally (`refresh`), searched by keywords (`keywords`) and meaning
(`embeddings`, `vectors`), ranked (`search`); `index.Knowledge` is the whole.
"""

from bot.knowledge.index import INDEX_DIRNAME, Knowledge, Passage, Retrieval
from bot.knowledge.refresh import RefreshReport

__all__ = ["INDEX_DIRNAME", "Knowledge", "Passage", "RefreshReport", "Retrieval"]

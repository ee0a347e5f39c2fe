"""What the bot knows: documents in KNOWLEDGE_DIR cut into passages, indexed under DATA_DIR/index
for keyword and semantic search (see `index` for the whole, `search` for how passages are chosen).
"""

from bot.knowledge.index import INDEX_DIRNAME, Knowledge, Passage, RefreshReport, Retrieval

__all__ = ["INDEX_DIRNAME", "Knowledge", "Passage", "RefreshReport", "Retrieval"]

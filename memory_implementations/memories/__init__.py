"""The memory tiers, one module each."""

from .buffer import ConversationBufferMemory
from .entity import EntityMemory
from .kv import KeyValueStoreMemory
from .summary import ConversationSummaryMemory
from .vector import VectorDatabaseMemory
from .working import WorkingMemory

__all__ = [
    "ConversationBufferMemory",
    "ConversationSummaryMemory",
    "EntityMemory",
    "KeyValueStoreMemory",
    "VectorDatabaseMemory",
    "WorkingMemory",
]

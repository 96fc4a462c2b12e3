"""The memory tiers, one module each."""

from .buffer import ConversationBufferMemory
from .kv import KeyValueStoreMemory
from .working import WorkingMemory

__all__ = ["ConversationBufferMemory", "KeyValueStoreMemory", "WorkingMemory"]

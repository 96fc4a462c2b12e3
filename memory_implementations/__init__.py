"""memory_implementations: six memory tiers and an orchestrator that compose token-budgeted LLM context."""

from .base import BaseMemory
from .config import MemoryConfig
from .context import ComprehensiveContext, SectionContext
from .errors import (
    BackendUnavailable,
    ConfigError,
    Conflict,
    ExtensionMissing,
    MemoryError,
    NotFound,
    ProviderError,
    SchemaMismatch,
    ValidationError,
)
from .logging import install_library_logging
from .memories import (
    ConversationBufferMemory,
    ConversationSummaryMemory,
    EntityMemory,
    KeyValueStoreMemory,
    VectorDatabaseMemory,
    WorkingMemory,
)
from .orchestrator import MemoryOrchestrator
from .stores import Stores
from .tokens import Tokenizer, count_tokens, get_tokenizer, truncate_to_tokens
from .turns import MemoryTurn, remember_turn
from .types import ContextRequest, HealthStatus, MemoryContext, MemoryType, Message, StoredRef

__version__ = "0.1.0"

# A library is quiet: our logs go to stdlib ``logging`` (NullHandler) until the application configures it.
install_library_logging()

__all__ = [
    "BackendUnavailable",
    "BaseMemory",
    "ComprehensiveContext",
    "ConfigError",
    "Conflict",
    "ContextRequest",
    "ConversationBufferMemory",
    "ConversationSummaryMemory",
    "EntityMemory",
    "ExtensionMissing",
    "HealthStatus",
    "KeyValueStoreMemory",
    "MemoryConfig",
    "MemoryContext",
    "MemoryError",
    "MemoryOrchestrator",
    "MemoryTurn",
    "MemoryType",
    "Message",
    "NotFound",
    "ProviderError",
    "SchemaMismatch",
    "SectionContext",
    "StoredRef",
    "Stores",
    "Tokenizer",
    "ValidationError",
    "VectorDatabaseMemory",
    "WorkingMemory",
    "__version__",
    "count_tokens",
    "get_tokenizer",
    "remember_turn",
    "truncate_to_tokens",
]

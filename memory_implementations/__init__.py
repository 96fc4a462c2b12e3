"""memory_implementations: six memory tiers and an orchestrator for LLM context."""

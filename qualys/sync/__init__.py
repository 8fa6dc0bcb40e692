"""One sync run: window, checkpoint, pages held for KnowledgeBase lookups, the KnowledgeBase cache, records."""

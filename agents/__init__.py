"""The EvidenceChain workflow: LangGraph nodes, drafting backends, CLI."""

"""Small shared helpers with no project knowledge: name registries and atomic file writes."""

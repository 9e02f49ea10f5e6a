"""One module per workflow node; each exposes `node(state, runtime) -> partial update`."""

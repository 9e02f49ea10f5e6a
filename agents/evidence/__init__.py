"""Pure builders that turn loaded inputs and fusion output into evidence items."""

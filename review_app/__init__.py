"""The review web app (`evchain serve`): accounts, pages, review actions over one output folder."""

"""The backend: the GraphQL admin API and its workers (DESIGN §1, §7)."""

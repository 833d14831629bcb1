"""The Strawberry schema of the admin API, one module per domain; names as Rafiki's."""

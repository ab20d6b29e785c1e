"""The HTTP API: the read model over Redis, the pages, bearer tokens and roles, directives from
operators, and the audit trail."""

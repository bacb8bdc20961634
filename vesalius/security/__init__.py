"""Security: identities, roles, the access-policy point and the audit trail (``audit``)."""

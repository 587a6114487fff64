"""The misalignment audit: does consistency training amplify or suppress a misalignment a model
already has? See `opct.audit.study` and `opct audit --help`."""

from opct.audit.study import AUDIT_METHODS, ORGANISMS, PROFILES, AuditError, AuditProfile, run_audit

__all__ = ["AUDIT_METHODS", "ORGANISMS", "PROFILES", "AuditError", "AuditProfile", "run_audit"]
